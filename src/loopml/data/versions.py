"""Working with recorded dataset versions: compare two, look at the first rows, delete one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from loopml.data.engine import schema_changes
from loopml.data.ingest import get_dataset, iter_version
from loopml.errors import ConflictError
from loopml.stores.records import DatasetVersion
from loopml.utils import utcnow

if TYPE_CHECKING:
    from loopml.workspace import Workspace

HEAD_MAX = 10_000
TOMBSTONE = "_deleted.json"  # left in a deleted version's folder: its number stays taken


def diff_versions(ws: Workspace, old_ref: str, new_ref: str) -> dict[str, Any]:
    """What changed from ``old_ref`` to ``new_ref`` (NAME@V each): columns added, removed or
    retyped, the row count, and per numeric column the change of mean and null count."""
    old, new = get_dataset(ws, old_ref), get_dataset(ws, new_ref)
    changes = schema_changes(old.schema, new.schema)
    columns: list[dict[str, Any]] = []
    for col in new.schema:
        name = col["name"]
        a, b = old.stats.get(name), new.stats.get(name)
        if a is None or b is None:
            continue
        entry: dict[str, Any] = {"column": name}
        for key in ("nulls", "distinct", "mean", "min", "max"):
            if (key in a or key in b) and a.get(key) != b.get(key):
                entry[key] = {"old": a.get(key), "new": b.get(key)}
        if len(entry) > 1:
            columns.append(entry)
    return {
        "old": f"{old.name}@{old.version}",
        "new": f"{new.name}@{new.version}",
        "rows": {"old": old.num_rows, "new": new.num_rows, "change": new.num_rows - old.num_rows},
        "sha256": {"old": old.sha256, "new": new.sha256, "same": old.sha256 == new.sha256},
        "schema": changes,
        "columns": columns,
        "relation": _relation(old, new),
    }


def _relation(old: DatasetVersion, new: DatasetVersion) -> str:
    if old.name != new.name:
        return "different datasets"
    if new.parent == old.version:
        return f"{new.mode} of {old.name}@{old.version}"
    if old.parent == new.version:
        return f"{old.mode} of {new.name}@{new.version}"
    return "versions of one dataset"


def head(ws: Workspace, ref: str, rows: int = 10) -> pa.Table:
    """The first ``rows`` rows of ``ref``, reading no more parts than needed."""
    rows = max(0, min(int(rows), HEAD_MAX))
    dv = get_dataset(ws, ref)
    got: list[pa.RecordBatch] = []
    count = 0
    for batch in iter_version(ws, dv):
        if count >= rows:
            break
        got.append(batch.slice(0, rows - count))
        count += min(batch.num_rows, rows - count)
    if not got:
        return pa.table({c["name"]: pa.array([], type=pa.null()) for c in dv.schema})
    return pa.Table.from_batches(got).combine_chunks()


def delete_version(ws: Workspace, ref: str, *, force: bool = False) -> DatasetVersion:
    """Remove ``ref`` (NAME@V): its record, then its files, leaving a tombstone
    (``_deleted.json``) in its folder so that its number is not used again.

    Refused while a model or run of the lineage uses it, unless ``force``; always refused
    while a later version appended to it reads its files (delete that one first)."""
    dv = get_dataset(ws, ref)
    label = f"{dv.name}@{dv.version}"
    users = ws.metadata.dataset_users(dv.name, dv.version)
    children = [u for u in users if u.startswith("dataset ")]
    if children:
        raise ConflictError(
            f"cannot delete {label}: {', '.join(u.removeprefix('dataset ') for u in children)} "
            "appended to it and read its files",
            where={"dataset": label, "used_by": children},
            hint="Delete the appended versions first (newest first)",
            code="in_use",
        )
    if users and not force:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise ConflictError(
            f"cannot delete {label}: the lineage of {shown} uses it",
            where={"dataset": label, "used_by": users},
            hint="Delete those first, or pass --force to delete it anyway (their lineage will "
            "then point at a version that is gone)",
            code="in_use",
        )
    # the tombstone goes first and stays: the next ingest's claim of this folder finds it and
    # moves on, so the number of a deleted version is never given to other content
    tombstone = f"{dv.path}/{TOMBSTONE}"
    ws.lake.write_bytes(
        tombstone,
        json.dumps(
            {
                "dataset": dv.name,
                "version": dv.version,
                "sha256": dv.sha256,
                "deleted_at": str(utcnow()),
            }
        ).encode(),
    )
    removed = ws.metadata.delete_dataset_version(dv.name, dv.version)
    for path in ws.lake.list(dv.path):  # its own files only: a parent's parts are the parent's
        if path != tombstone:
            ws.lake.delete(path)
    return removed


__all__ = ["delete_version", "diff_versions", "head"]
