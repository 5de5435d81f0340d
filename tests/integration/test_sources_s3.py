"""Files, Parquet folders and hive trees read from ``s3://`` on moto's S3 server, with the
workspace's endpoint (``LOOPML_S3_ENDPOINT_URL``): the same content hash as read locally."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from loopml.data import ingest, load_table
from loopml.errors import LoopmlError
from loopml.workspace import init

pytestmark = pytest.mark.s3


def bucket(endpoint: str) -> tuple[object, str]:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    name = f"src-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    return fs, name


def tree(root: Path) -> Path:
    n = 3000
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "amount": pa.array([i * 0.25 for i in range(n)]),
            "year": pa.array([2013 + i % 2 for i in range(n)]),
            "month": pa.array([1 + i % 12 for i in range(n)]),
        }
    )
    ds.write_dataset(
        table, root, format="parquet", partitioning=["year", "month"], partitioning_flavor="hive"
    )
    return root


def test_a_hive_tree_on_s3_hashes_as_the_same_tree_locally(s3_env: str, tmp_path: Path) -> None:
    local = tree(tmp_path / "tx")
    fs, name = bucket(s3_env)
    fs.put(str(local), f"{name}/tx", recursive=True)  # type: ignore[attr-defined]
    with init(tmp_path / "a") as here, init(tmp_path / "b") as there:
        mine = ingest(here, local, "tx").dataset
        theirs = ingest(there, f"s3://{name}/tx/", "tx").dataset
        assert theirs.source == f"s3://{name}/tx/"
        assert theirs.sha256 == mine.sha256
        assert theirs.num_rows == 3000
        types = {c["name"]: (c["type"], c.get("from_path")) for c in theirs.schema}
        assert types["year"] == ("int64", True)
        assert types["month"] == ("int64", True)
        got = load_table(there, "tx", verify=True)
        assert sorted(got.column("id").to_pylist()) == list(range(3000))
        # without a trailing slash too: a URI naming no file is a folder
        assert not ingest(there, f"s3://{name}/tx", "tx").created


def test_one_parquet_file_on_s3_and_a_missing_folder(s3_env: str, tmp_path: Path) -> None:
    fs, name = bucket(s3_env)
    pq.write_table(pa.table({"a": [1, 2, 3]}), tmp_path / "one.parquet")
    fs.put(str(tmp_path / "one.parquet"), f"{name}/one.parquet")  # type: ignore[attr-defined]
    with init(tmp_path / "ws") as ws:
        assert ingest(ws, f"s3://{name}/one.parquet", "one").dataset.num_rows == 3
        with pytest.raises(LoopmlError) as info:
            ingest(ws, f"s3://{name}/nothing/", "none")
        assert f"s3://{name}/nothing" in info.value.message
