"""``hdfs://`` URLs: read as files through fsspec's wrapper of pyarrow's HadoopFileSystem.

There is no Hadoop cluster (nor JVM) here, so this checks the interface: dispatch by extension
to the file sources, the filesystem class fsspec picks, how the URL's parts become its
arguments, and that a failed connection is a loopml error naming the URL.
"""

from __future__ import annotations

import fsspec
import pytest

from loopml.data.sources import (
    CsvSource,
    JsonLinesSource,
    ParquetSource,
    scheme_factory,
    source_for,
)
from loopml.errors import LoopmlError


@pytest.mark.parametrize(
    ("uri", "cls"),
    [
        ("hdfs://namenode:8020/data/tx.parquet", ParquetSource),
        ("hdfs://namenode/data/tx.csv.gz", CsvSource),
        ("hdfs://alice@namenode:9000/events/day=1/part.jsonl", JsonLinesSource),
    ],
)
def test_hdfs_urls_are_file_sources(uri: str, cls: type) -> None:
    assert scheme_factory(uri) is None  # not a database, API or stream scheme
    source = source_for(uri)
    assert type(source) is cls
    assert source.describe() == uri  # kept as given, not made a local path


def test_fsspec_maps_hdfs_to_pyarrows_hadoop_filesystem() -> None:
    from pyarrow import fs as pafs

    cls = fsspec.get_filesystem_class("hdfs")
    assert cls.__module__ == "fsspec.implementations.arrow"
    assert cls.__name__ == "HadoopFileSystem"
    kwargs = cls._get_kwargs_from_urls("hdfs://alice@namenode:8020/data/tx.parquet")
    assert kwargs == {"host": "namenode", "port": 8020, "user": "alice"}
    assert cls._strip_protocol("hdfs://alice@namenode:8020/data/tx.parquet") == "/data/tx.parquet"
    assert hasattr(pafs, "HadoopFileSystem")


def test_without_a_cluster_the_error_names_the_url() -> None:
    source = source_for("hdfs://127.0.0.1:1/data/tx.parquet")
    with pytest.raises(LoopmlError, match=r"hdfs://127\.0\.0\.1:1/data/tx\.parquet"):
        source.read()
