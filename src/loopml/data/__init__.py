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
    ingest_stream,
    iter_version,
    list_datasets,
    load_dataset,
    load_table,
    normalize,
    read_version,
    version_parts,
    version_urls,
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
    register_scheme,
    source_for,
)
from loopml.data.stats import StreamingStats, column_stats, compute_stats
from loopml.data.validate import ValidationError
from loopml.data.versions import delete_version, diff_versions, head

__all__ = [
    "KINDS",
    "CsvSource",
    "FileSource",
    "IngestResult",
    "JsonLinesSource",
    "ParquetSource",
    "Source",
    "StreamingStats",
    "TableSource",
    "TsvSource",
    "ValidationError",
    "as_source",
    "check_columns",
    "column_stats",
    "compute_stats",
    "content_sha256",
    "delete_version",
    "diff_versions",
    "get_dataset",
    "head",
    "ingest",
    "ingest_stream",
    "iter_version",
    "kind_of",
    "list_datasets",
    "load_dataset",
    "load_table",
    "normalize",
    "read_version",
    "register_scheme",
    "schema_of",
    "source_for",
    "version_parts",
    "version_urls",
]
