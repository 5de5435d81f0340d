"""Data: sources, ingestion into versioned datasets, schemas and statistics.

>>> res = ingest(ws, "cancer.csv", "cancer")      # a new version, or the one holding it
>>> frame = load_dataset(ws, "cancer")            # the latest version as a DataFrame
>>> get_dataset(ws, "cancer@1").stats["radius"]   # what was recorded about a column
"""

from loopml.data.ingest import (
    IngestResult,
    as_source,
    content_sha256,
    get_dataset,
    ingest,
    list_datasets,
    load_dataset,
    load_table,
    normalize,
)
from loopml.data.schema import KINDS, check_columns, kind_of, schema_of
from loopml.data.sources import (
    CsvSource,
    FileSource,
    JsonLinesSource,
    ParquetSource,
    Source,
    TableSource,
    TsvSource,
    source_for,
)
from loopml.data.stats import column_stats, compute_stats

__all__ = [
    "KINDS",
    "CsvSource",
    "FileSource",
    "IngestResult",
    "JsonLinesSource",
    "ParquetSource",
    "Source",
    "TableSource",
    "TsvSource",
    "as_source",
    "check_columns",
    "column_stats",
    "compute_stats",
    "content_sha256",
    "get_dataset",
    "ingest",
    "kind_of",
    "list_datasets",
    "load_dataset",
    "load_table",
    "normalize",
    "schema_of",
    "source_for",
]
