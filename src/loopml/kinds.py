"""The kinds of columns, defined once: how a column is meant to be used.

Data kinds describe a dataset column (``data.schema`` infers them from Arrow types and
statistics); feature kinds say how a model input is transformed and validated (``features``,
``registry.signature``, ``monitor``). This module is part of the base layer: it imports nothing
of loopml's, so every stage can share these names.
"""

from __future__ import annotations

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BOOLEAN = "boolean"
DATETIME = "datetime"
TEXT = "text"

# every logical kind a dataset column can have
DATA_KINDS = (NUMERIC, CATEGORICAL, BOOLEAN, DATETIME, TEXT)
# the kinds a model input (a feature column of a signature) can have; a datetime feature is an
# instant, expanded into numeric date parts by the feature pipeline; a text feature is free text,
# vectorized (TF-IDF or hashed words) by it
FEATURE_KINDS = (NUMERIC, CATEGORICAL, DATETIME, TEXT)

__all__ = ["BOOLEAN", "CATEGORICAL", "DATA_KINDS", "DATETIME", "FEATURE_KINDS", "NUMERIC", "TEXT"]
