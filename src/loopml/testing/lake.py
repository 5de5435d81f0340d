"""The Lake contract."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from loopml.errors import InvalidInputError, NotFoundError
from loopml.stores.base import Lake
from loopml.testing._common import BAD_PATHS, Check, _equal, _opened, _raises, _run_all, _unique


def _table(n: int, offset: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(offset, offset + n), pa.int64()),
            "x": pa.array([i / 4 for i in range(n)], pa.float64()),
            "label": pa.array([f"r{i}" if i % 3 else None for i in range(n)], pa.string()),
        }
    )


def check_bytes_round_trip(factory: Callable[[], Lake]) -> None:
    """Files come back byte for byte; a rewrite replaces; the returned URL is url(path)."""
    base = _unique("checks")
    with _opened(factory) as lake:
        path = f"{base}/reports/deep/er/report.html"
        url = lake.write_bytes(path, b"<html>\x00\xff</html>")
        _equal(url, lake.url(path), "returned URL")
        _equal(lake.read_bytes(path), b"<html>\x00\xff</html>", "content")
        lake.write_bytes(path, b"second")
        _equal(lake.read_bytes(path), b"second", "content after a rewrite")
        lake.write_bytes(f"{base}/empty.bin", b"")
        _equal(lake.read_bytes(f"{base}/empty.bin"), b"", "an empty file")
        _equal(lake.exists(path), True, "exists")


def check_table_round_trip(factory: Callable[[], Lake]) -> None:
    """A table written as one Parquet file reads back equal, schema included."""
    base = _unique("checks")
    table = _table(50)
    with _opened(factory) as lake:
        url = lake.write_table(f"{base}/t/part-0.parquet", table)
        _equal(url, lake.url(f"{base}/t/part-0.parquet"), "returned URL")
        got = lake.read_table(f"{base}/t/part-0.parquet")
        _equal(got.schema.remove_metadata(), table.schema, "schema")
        _equal(got.to_pylist(), table.to_pylist(), "rows")
        _equal(lake.read_table(f"{base}/t").to_pylist(), table.to_pylist(), "read the folder")


def check_read_folder(factory: Callable[[], Lake]) -> None:
    """A folder reads every *.parquet under it, recursively and in path order; nothing else."""
    base = _unique("checks")
    with _opened(factory) as lake:
        lake.write_table(f"{base}/d/date=2024-01-02/part-0.parquet", _table(3, 10))
        lake.write_table(f"{base}/d/date=2024-01-01/part-1.parquet", _table(2, 0))
        lake.write_table(f"{base}/d/date=2024-01-01/part-0.parquet", _table(1, 100))
        lake.write_bytes(f"{base}/d/README.txt", b"not a table")
        got = lake.read_table(f"{base}/d")
        _equal(got.column("id").to_pylist(), [100, 0, 1, 10, 11, 12], "ids in path order")
        _equal(got.column_names, ["id", "x", "label"], "columns (no partition columns added)")
        _equal(lake.read_table(f"{base}/d/").num_rows, 6, "with a trailing slash")


def check_schema_promotion(factory: Callable[[], Lake]) -> None:
    """Files whose columns differ read as one table: missing columns become nulls."""
    base = _unique("checks")
    with _opened(factory) as lake:
        lake.write_table(f"{base}/d/a.parquet", pa.table({"id": [1, 2], "x": [0.5, 1.5]}))
        lake.write_table(f"{base}/d/b.parquet", pa.table({"id": [3], "y": ["new"]}))
        lake.write_table(f"{base}/d/c.parquet", pa.table({"id": [4], "x": pa.nulls(1)}))
        got = lake.read_table(f"{base}/d")
        _equal(got.schema.field("x").type, pa.float64(), "promoted type of x")
        _equal(
            got.to_pylist(),
            [
                {"id": 1, "x": 0.5, "y": None},
                {"id": 2, "x": 1.5, "y": None},
                {"id": 3, "x": None, "y": "new"},
                {"id": 4, "x": None, "y": None},
            ],
            "rows",
        )


def check_lake_not_found(factory: Callable[[], Lake]) -> None:
    """Missing files and folders raise NotFoundError; exists says False."""
    base = _unique("checks")
    with _opened(factory) as lake:
        _raises(NotFoundError, lambda: lake.read_bytes(f"{base}/none.bin"), "read_bytes")
        _raises(NotFoundError, lambda: lake.read_table(f"{base}/none.parquet"), "read a table")
        _raises(NotFoundError, lambda: lake.read_table(f"{base}/folder"), "read a folder")
        lake.write_bytes(f"{base}/only-text/a.txt", b"x")
        _raises(NotFoundError, lambda: lake.read_table(f"{base}/only-text"), "no parquet inside")
        _equal(lake.exists(f"{base}/none.bin"), False, "exists")


def check_list(factory: Callable[[], Lake]) -> None:
    """list() gives the files under a prefix, sorted, as paths relative to the lake's root."""
    base = _unique("checks")
    with _opened(factory) as lake:
        for path in ["b/2.txt", "a/1.txt", "a/sub/0.txt", "c.txt"]:
            lake.write_bytes(f"{base}/{path}", b"x")
        want = [f"{base}/{p}" for p in ["a/1.txt", "a/sub/0.txt", "b/2.txt", "c.txt"]]
        _equal(lake.list(base), want, "list(prefix)")
        _equal(lake.list(f"{base}/"), want, "list(prefix/)")
        _equal(lake.list(f"{base}/a"), want[:2], "list(sub-folder)")
        _equal(lake.list(f"{base}/none"), [], "list of a missing folder")
        everything = lake.list()
        _equal([p for p in everything if p.startswith(f"{base}/")], want, "list() of the root")
        _equal(everything, sorted(everything), "list() is sorted")


def check_delete(factory: Callable[[], Lake]) -> None:
    """delete() removes a file or a whole folder; deleting nothing is fine."""
    base = _unique("checks")
    with _opened(factory) as lake:
        for path in ["keep.txt", "d/a.txt", "d/e/b.txt"]:
            lake.write_bytes(f"{base}/{path}", b"x")
        lake.delete(f"{base}/keep.txt")
        lake.delete(f"{base}/d")
        _equal(lake.list(base), [], "after deleting the folder and the file")
        _equal(lake.exists(f"{base}/d/a.txt"), False, "a deleted file")
        lake.delete(f"{base}/never-there")


def check_lake_path_validation(factory: Callable[[], Lake]) -> None:
    """Paths that could escape the root or are malformed raise InvalidInputError everywhere."""
    table = _table(1)
    with _opened(factory) as lake:
        calls: dict[str, Callable[[str], Any]] = {
            "write_bytes": lambda p: lake.write_bytes(p, b"x"),
            "write_table": lambda p: lake.write_table(p, table),
            "read_bytes": lake.read_bytes,
            "read_table": lake.read_table,
            "exists": lake.exists,
            "delete": lake.delete,
            "list": lake.list,
            "url": lake.url,
        }
        for bad in BAD_PATHS:
            for method, call in calls.items():
                if bad == "" and method in ("list", "url"):
                    continue  # "" is the root: fine for a listing or a URL
                _raises(InvalidInputError, partial(call, bad), f"{method}({bad!r})")


def check_atomic_rewrite(factory: Callable[[], Lake]) -> None:
    """Readers racing a rewriter see the old file or the new one, never a part; no leftovers."""
    base = _unique("checks")
    path = f"{base}/big.bin"
    versions = [bytes([i]) * (2 * 1024 * 1024) for i in (1, 2)]
    seen: list[bytes] = []
    failures: list[BaseException] = []
    with _opened(factory) as lake:
        lake.write_bytes(path, versions[0])
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    data = lake.read_bytes(path)
                    if data not in versions:
                        seen.append(data[:16] + b"..." + str(len(data)).encode())
            except BaseException as exc:
                failures.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(12):
                lake.write_bytes(path, versions[i % 2])
        finally:
            done.set()
            reader.join(60)
        if failures:
            raise AssertionError(f"a reader failed during rewrites: {failures[0]!r}")
        if seen:
            raise AssertionError(f"a reader saw a partial file: {seen[0]!r}")
        not_a_table: Any = "not a table"
        _raises(InvalidInputError, lambda: lake.write_table(path, not_a_table), "bad table")
        _equal(lake.read_bytes(path), versions[1], "content after a refused rewrite")
        _equal(lake.list(base), [path], "files left (no temporary ones)")


def check_url(factory: Callable[[], Lake]) -> None:
    """url() is absolute, with the store's scheme, and names the path."""
    with _opened(factory) as lake:
        root = lake.url()
        scheme = urlsplit(root).scheme
        _equal(bool(scheme), True, f"url() of the root {root!r} has a scheme")
        url = lake.url("datasets/x/v=1")
        _equal(url.startswith(root.rstrip("/") + "/"), True, f"{url!r} is under {root!r}")
        _equal(url.endswith("datasets/x/v=1"), True, f"{url!r} ends with the path")


def lake_checks() -> Iterator[tuple[str, Check]]:
    """``(name, check)`` for every check of the Lake contract."""
    checks: list[Check] = [
        check_bytes_round_trip,
        check_table_round_trip,
        check_read_folder,
        check_schema_promotion,
        check_lake_not_found,
        check_list,
        check_delete,
        check_lake_path_validation,
        check_atomic_rewrite,
        check_url,
    ]
    for check in checks:
        yield check.__name__.removeprefix("check_"), check


def check_lake(lake_factory: Callable[[], Lake]) -> None:
    """Run every Lake check against ``lake_factory``; the first failure raises."""
    _run_all(lake_checks(), lake_factory)
