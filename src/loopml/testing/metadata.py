"""The MetadataStore contract."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from subprocess import PIPE
from typing import Any

from loopml.errors import ConflictError, InvalidInputError, NotFoundError
from loopml.stores.base import MetadataStore
from loopml.stores.records import DatasetVersion, ModelVersion, Run
from loopml.testing._common import Check, _equal, _opened, _race, _raises, _run_all, _unique
from loopml.utils import process_owner

_T0 = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _dataset(name: str, version: int = 1, **changes: Any) -> DatasetVersion:
    dv = DatasetVersion(
        name=name,
        version=version,
        sha256=hashlib.sha256(f"{name}/{version}".encode()).hexdigest(),
        path=f"datasets/{name}/v={version}",
        num_rows=100 * version,
        schema=[{"name": "x", "type": "double", "nullable": True}],
        stats={"x": {"mean": 1.5, "min": -2, "max": 4.25, "nulls": 0}},
        source=f"/data/{name}.csv",
        created_at=_T0 + timedelta(minutes=version),
        num_bytes=2048 * version,
    )
    return replace(dv, **changes)


def _run(name: str, **changes: Any) -> Run:
    run = Run(
        id=uuid.uuid4().hex,
        name=name,
        status="running",
        started_at=_T0,
        params={"model": {"class": "LogisticRegression", "C": 0.5}, "seed": 0},
        dataset_name="cancer",
        dataset_version=1,
        git_commit="0" * 40,
        packages={"scikit-learn": "1.5.0"},
    )
    return replace(run, **changes)


def _model(name: str, **changes: Any) -> ModelVersion:
    mv = ModelVersion(
        name=name,
        version=0,
        run_id=uuid.uuid4().hex,
        artifact_sha256="ab" * 32,
        flavor="sklearn",
        signature={"inputs": [{"name": "x", "type": "float64"}], "classes": [0, 1]},
        metrics={"roc_auc": 0.97},
        dataset_name="cancer",
        dataset_version=1,
        created_at=_T0,
        size_bytes=12345,
    )
    return replace(mv, **changes)


def check_dataset_round_trip(factory: Callable[[], MetadataStore]) -> None:
    """A dataset version comes back equal, as the latest, by version and by content hash."""
    name = _unique("ds")
    dv = _dataset(name)
    with _opened(factory) as store:
        _equal(store.latest_dataset_version(name), 0, "latest of an unknown dataset")
        _equal(store.add_dataset_version(dv), dv, "add_dataset_version's return")
        _equal(store.get_dataset_version(name, 1), dv, "get by version")
        _equal(store.get_dataset_version(name), dv, "get latest")
        _equal(store.find_dataset_version(name, dv.sha256), dv, "find by sha256")
        _equal(store.find_dataset_version(name, "0" * 64), None, "find an unknown sha256")
        _equal(store.list_dataset_versions(name), [dv], "list of one dataset")
        _equal(store.latest_dataset_version(name), 1, "latest version")


def check_dataset_versions_ordering(factory: Callable[[], MetadataStore]) -> None:
    """Versions list by name then version, whatever the insertion order."""
    a, b = _unique("a-ds"), _unique("b-ds")
    with _opened(factory) as store:
        for name, version in [(b, 2), (a, 3), (b, 1), (a, 1), (a, 2)]:
            store.add_dataset_version(_dataset(name, version))
        got = [(d.name, d.version) for d in store.list_dataset_versions(a)]
        _equal(got, [(a, 1), (a, 2), (a, 3)], "versions of one dataset")
        every = [(d.name, d.version) for d in store.list_dataset_versions() if d.name in (a, b)]
        _equal(every, [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)], "versions of all datasets")
        _equal(store.latest_dataset_version(a), 3, "latest of a")
        _equal(store.get_dataset_version(b).version, 2, "get latest of b")


def check_dataset_conflicts(factory: Callable[[], MetadataStore]) -> None:
    """The same (name, version) or the same (name, content) is refused; the store goes on."""
    name = _unique("ds")
    dv = _dataset(name)
    with _opened(factory) as store:
        store.add_dataset_version(dv)
        twin = _dataset(name, 1, sha256="1" * 64)
        _raises(ConflictError, lambda: store.add_dataset_version(twin), "same version")
        again = _dataset(name, 2, sha256=dv.sha256)
        _raises(ConflictError, lambda: store.add_dataset_version(again), "same content")
        other = _dataset(_unique("other"), 1, sha256=dv.sha256)
        _equal(store.add_dataset_version(other), other, "same content in another dataset")
        _equal(store.list_dataset_versions(name), [dv], "after the refused writes")
        store.add_dataset_version(_dataset(name, 2))
        _equal(store.latest_dataset_version(name), 2, "a write after a refused one")


def check_dataset_not_found(factory: Callable[[], MetadataStore]) -> None:
    """Unknown datasets and versions raise NotFoundError (a LookupError)."""
    name = _unique("ds")
    with _opened(factory) as store:
        _raises(NotFoundError, lambda: store.get_dataset_version(name), "unknown dataset")
        _raises(LookupError, lambda: store.get_dataset_version(name, 1), "unknown dataset")
        store.add_dataset_version(_dataset(name))
        _raises(NotFoundError, lambda: store.get_dataset_version(name, 2), "unknown version")
        _equal(store.list_dataset_versions(_unique("none")), [], "list of an unknown dataset")


def check_dataset_lineage_fields(factory: Callable[[], MetadataStore]) -> None:
    """Parent, mode, parts and partition columns come back as given."""
    name = _unique("ds")
    first = _dataset(name, parts=[f"datasets/{name}/v=1/part-00000.parquet"])
    second = _dataset(
        name,
        2,
        parent=1,
        mode="append",
        parts=[*first.parts, f"datasets/{name}/v=2/day=2024-01-02/part-00000.parquet"],
        partition_by=["day"],
    )
    with _opened(factory) as store:
        store.add_dataset_version(first)
        store.add_dataset_version(second)
        _equal(store.get_dataset_version(name, 1), first, "a replace version")
        _equal(store.get_dataset_version(name, 2), second, "an append version")
        _equal(store.dataset_users(name, 1), [f"dataset {name}@2"], "users of the parent")
        _equal(store.dataset_users(name, 2), [], "users of the child")


def check_source_positions(factory: Callable[[], MetadataStore]) -> None:
    """A position is stored with the version that holds the data up to it, and only then."""
    name, other = _unique("ds"), _unique("ds")
    key = "sql:postgresql://u:***@db/test#tx"
    with _opened(factory) as store:
        _equal(store.get_source_position(name, key), None, "never recorded")
        store.add_dataset_version(_dataset(name), position=(key, {"cursor": "2024-01-01", "n": 3}))
        _equal(store.get_source_position(name, key), {"cursor": "2024-01-01", "n": 3}, "recorded")
        # a version that clashes records nothing: the position stays
        _raises(
            ConflictError,
            lambda: store.add_dataset_version(_dataset(name), position=(key, {"cursor": "X"})),
            "a clashing version with a position",
        )
        _equal(
            store.get_source_position(name, key),
            {"cursor": "2024-01-01", "n": 3},
            "after a clash",
        )
        store.add_dataset_version(_dataset(name, 2), position=(key, {"cursor": "2024-02-01"}))
        _equal(store.get_source_position(name, key), {"cursor": "2024-02-01"}, "moved on")
        _equal(store.get_source_position(other, key), None, "another dataset")
        _equal(store.get_source_position(name, key + "x"), None, "another key")
        _raises(
            InvalidInputError,
            lambda: store.add_dataset_version(_dataset(name, 3), position=(key, [1])),  # type: ignore[arg-type]
            "a position that is not an object",
        )
        _equal(store.latest_dataset_version(name), 2, "nothing recorded with a bad position")


def check_dataset_delete(factory: Callable[[], MetadataStore]) -> None:
    """A deleted version is gone; its users are named; deleting it again is NotFound."""
    name = _unique("ds")
    with _opened(factory) as store:
        store.add_dataset_version(_dataset(name))
        store.add_dataset_version(_dataset(name, 2))
        store.add_run(_run("m", dataset_name=name, dataset_version=2))
        users = store.dataset_users(name, 2)
        _equal(len(users), 1, "one run uses version 2")
        _equal(users[0].startswith("run "), True, "named as a run")
        _equal(store.delete_dataset_version(name, 1).version, 1, "the deleted record")
        _raises(NotFoundError, lambda: store.get_dataset_version(name, 1), "read it after")
        _raises(NotFoundError, lambda: store.delete_dataset_version(name, 1), "delete twice")
        _equal([d.version for d in store.list_dataset_versions(name)], [2], "what is left")


def check_run_round_trip(factory: Callable[[], MetadataStore]) -> None:
    """A run comes back equal; update replaces it; duplicate and unknown ids are refused."""
    run = _run(_unique("model"))
    with _opened(factory) as store:
        _equal(store.add_run(run), run, "add_run's return")
        _equal(store.get_run(run.id), run, "get_run")
        done = replace(
            run,
            status="succeeded",
            metrics={"holdout": {"roc_auc": 0.98}, "cv": {"roc_auc": {"mean": 0.97}}},
            duration_s=12.5,
            model_version=3,
        )
        _equal(store.update_run(done), done, "update_run's return")
        _equal(store.get_run(run.id), done, "get_run after update")
        _raises(ConflictError, lambda: store.add_run(run), "add a run id twice")
        ghost = _run(run.name)
        _raises(NotFoundError, lambda: store.update_run(ghost), "update an unknown run")
        _raises(NotFoundError, lambda: store.get_run(ghost.id), "get an unknown run")


def _exited_owner() -> dict[str, Any]:
    """The owner (``loopml.utils.process_owner``) of a real process that was killed."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=PIPE)
    try:
        owner = process_owner(child.pid)
    finally:
        child.kill()
        child.wait(30)
    return owner


def check_run_owner(factory: Callable[[], MetadataStore]) -> None:
    """A run keeps its owner; a running run whose owner process died is seen as aborted."""
    name = _unique("model")
    alive = _run(name, owner=process_owner())
    elsewhere = _run(name, owner={"host": _unique("another-host"), "pid": 1, "started": "1"})
    dead = _run(name, owner=_exited_owner())
    done = replace(_run(name), status="succeeded", duration_s=1.0, owner=dead.owner)
    with _opened(factory) as store:
        for run in (alive, elsewhere, dead, done):
            store.add_run(run)
        _equal(store.get_run(alive.id), alive, "a run of a live process")
        _equal(store.get_run(elsewhere.id), elsewhere, "a run of another host")
        _equal(store.get_run(done.id), done, "a finished run of a process now gone")
        seen = store.get_run(dead.id)
        _equal(seen.status, "aborted", "a running run whose process died")
        if "died" not in (seen.error or ""):
            raise AssertionError(f"an aborted run says why: got error {seen.error!r}")
        _equal(replace(seen, status="running", error=None), dead, "the rest of the aborted run")
        listed = {r.id: r.status for r in store.list_runs(name)}
        want = {alive.id: "running", elsewhere.id: "running", dead.id: "aborted"}
        _equal(listed, {**want, done.id: "succeeded"}, "statuses listed")
    with _opened(factory) as again:
        _equal(again.get_run(dead.id), seen, "the aborted run, read again")


def check_runs_newest_first(factory: Callable[[], MetadataStore]) -> None:
    """Runs list newest first, per model or all, up to ``limit``."""
    name = _unique("model")
    starts = [_T0 + timedelta(hours=h) for h in (2, 0, 3, 1)]
    with _opened(factory) as store:
        made = [store.add_run(_run(name, started_at=t)) for t in starts]
        store.add_run(_run(_unique("other"), started_at=_T0 + timedelta(hours=9)))
        newest = sorted(made, key=lambda r: r.started_at, reverse=True)
        _equal([r.id for r in store.list_runs(name)], [r.id for r in newest], "runs of a model")
        _equal([r.id for r in store.list_runs(name, limit=2)], [r.id for r in newest[:2]], "limit")
        every = [r.id for r in store.list_runs(limit=10_000) if r.name == name]
        _equal(every, [r.id for r in newest], "runs of every model")
        _equal(store.list_runs(_unique("none")), [], "runs of an unknown model")


def check_run_id_prefixes(factory: Callable[[], MetadataStore]) -> None:
    """A unique prefix of 4+ hex digits (any case) finds its run, as git finds a commit; an
    ambiguous one lists candidates; anything but hex never reaches the query (no wildcards)."""
    stem = uuid.uuid4().hex[:20]  # ids of this check share it, and no other run does
    ids = sorted([f"{stem}a{'0' * 11}", f"{stem}ab{'0' * 10}", f"{stem}b{'1' * 11}"])
    named = f"run-{uuid.uuid4().hex}"  # ids given by a user need not be hex
    with _opened(factory) as store:
        for run_id in [*ids, named]:
            store.add_run(_run(_unique("model"), id=run_id))
        _equal(store.run_ids_with_prefix(stem), ids, "every id with the prefix, sorted")
        _equal(store.run_ids_with_prefix(stem, limit=2), ids[:2], "limit")
        _equal(store.run_ids_with_prefix(f"{stem}b"), [ids[2]], "one id")
        _equal(store.run_ids_with_prefix(f"{stem}B".upper()), [ids[2]], "upper case")
        _equal(store.run_ids_with_prefix(f"{stem}c"), [], "no id")
        _equal(store.resolve_run(f"{stem}b").id, ids[2], "a unique prefix")
        _equal(store.resolve_run(ids[1].upper()).id, ids[1], "a whole id in upper case")
        _equal(store.resolve_run(ids[0]), store.get_run(ids[0]), "a whole id")
        _equal(store.resolve_run(named).id, named, "a whole id that is not hex")
        err = _raises(InvalidInputError, lambda: store.resolve_run(f"{stem}a"), "ambiguous")
        for run_id in ids[:2]:
            if run_id not in str(err):
                raise AssertionError(f"the ambiguity names candidate {run_id}: {err}")
        _raises(NotFoundError, lambda: store.resolve_run(f"{stem}c"), "unknown prefix")
        _raises(InvalidInputError, lambda: store.resolve_run(stem[:3]), "3 hex digits")
        for bad in ("", "abc", "ab%d", "ab_d", f"{stem[:8]}%", "zzzz", "a" * 65, " abcd"):
            _raises(InvalidInputError, partial(store.run_ids_with_prefix, bad), f"prefix {bad!r}")
        for bad_limit in (0, -1, True):
            _raises(
                InvalidInputError,
                partial(store.run_ids_with_prefix, stem, limit=bad_limit),
                f"limit {bad_limit!r}",
            )


def check_run_tags(factory: Callable[[], MetadataStore]) -> None:
    """Tags are set and deleted by key, keeping the others; bad keys and runs are refused."""
    run = _run(_unique("model"), tags={"team": "risk"})
    with _opened(factory) as store:
        store.add_run(run)
        _equal(store.get_run(run.id).tags, {"team": "risk"}, "tags given at creation")
        got = store.set_run_tags(run.id, {"stage": "dev", "team": "fraud"})
        _equal(got.tags, {"stage": "dev", "team": "fraud"}, "tags set (one replaced)")
        got = store.set_run_tags(run.id, {"note": "ok"}, delete=["stage"])
        _equal(got.tags, {"note": "ok", "team": "fraud"}, "a tag deleted, another set")
        _equal(store.get_run(run.id), got, "the run as stored")
        _raises(NotFoundError, lambda: store.set_run_tags(run.id, {}, ["nope"]), "delete absent")
        _raises(NotFoundError, lambda: store.set_run_tags(_run("x").id, {"a": "b"}), "unknown run")
        bad_tags: list[dict[str, Any]] = [{"": "x"}, {"k": 1}, {"k" * 257: "x"}]
        for bad in bad_tags:
            _raises(InvalidInputError, partial(store.set_run_tags, run.id, bad), f"tags {bad!r}")
        _equal(store.get_run(run.id).tags, got.tags, "tags after refused changes")


def check_run_steps(factory: Callable[[], MetadataStore]) -> None:
    """Steps come back ordered by key then step; a step logged again is replaced."""
    run = _run(_unique("model"))
    with _opened(factory) as store:
        store.add_run(run)
        for step, value in ((1, 0.5), (0, 0.25), (2, None)):
            store.log_step(run.id, "cv.roc_auc", step, value, at=_T0)
        store.log_step(run.id, "a.loss", 0, 3, at=_T0)
        store.log_step(run.id, "cv.roc_auc", 1, 0.75, at=_T0 + timedelta(seconds=1))
        got = [(s.key, s.step, s.value) for s in store.list_steps(run.id)]
        want = [("a.loss", 0, 3.0), ("cv.roc_auc", 0, 0.25), ("cv.roc_auc", 1, 0.75)]
        _equal(got, [*want, ("cv.roc_auc", 2, None)], "steps by key then step")
        one = store.list_steps(run.id, "a.loss")
        _equal([(s.key, s.value, s.at) for s in one], [("a.loss", 3.0, _T0)], "one key")
        _equal(store.list_steps(_run("x").id), [], "steps of an unknown run")
        _raises(NotFoundError, lambda: store.log_step(_run("x").id, "k", 0, 1.0), "unknown run")
        bad_steps: list[tuple[Any, Any, Any]] = [("", 0, 1.0), ("k", -1, 1.0), ("k", True, 1.0)]
        for key, step, value in [*bad_steps, ("k", 0, "1")]:
            _raises(
                InvalidInputError,
                partial(store.log_step, run.id, key, step, value),
                f"step {key!r} {step!r} {value!r}",
            )


def check_run_children_and_delete(factory: Callable[[], MetadataStore]) -> None:
    """Children list by parent; a run is deleted with its steps unless a version uses it."""
    name = _unique("model")
    with _opened(factory) as store:
        parent = store.add_run(_run(name))
        kids = [
            store.add_run(_run(name, parent_id=parent.id, started_at=_T0 + timedelta(hours=h)))
            for h in (1, 2)
        ]
        store.add_run(_run(name))
        listed = [r.id for r in store.list_runs(parent=parent.id)]
        _equal(listed, [kids[1].id, kids[0].id], "children, newest first")
        _equal(store.list_runs(parent=kids[0].id), [], "a run without children")
        store.log_step(kids[0].id, "loss", 0, 1.0)
        store.delete_run(kids[0].id)
        _raises(NotFoundError, lambda: store.get_run(kids[0].id), "a deleted run")
        _equal(store.list_steps(kids[0].id), [], "the deleted run's steps")
        _raises(NotFoundError, lambda: store.delete_run(kids[0].id), "delete it again")
        used = store.add_model_version(_model(name, run_id=kids[1].id))
        err = _raises(ConflictError, lambda: store.delete_run(kids[1].id), "a run with a version")
        if f"{name}@{used.version}" not in str(err) or getattr(err, "code", "") != "run_in_use":
            raise AssertionError(f"the refusal names the version {name}@{used.version}: {err}")
        _equal(store.get_run(kids[1].id).id, kids[1].id, "the refused run is kept")


def check_model_version_numbering(factory: Callable[[], MetadataStore]) -> None:
    """Each name numbers its versions 1, 2, 3...; the store assigns the number."""
    a, b = _unique("a-model"), _unique("b-model")
    with _opened(factory) as store:
        first = store.add_model_version(_model(a))
        _equal(first.version, 1, "first version")
        _equal(first, replace(_model(a, run_id=first.run_id), version=1), "returned record")
        _equal(store.add_model_version(_model(b, version=7)).version, 1, "given number ignored")
        _equal(store.add_model_version(_model(a)).version, 2, "second version")
        _equal(store.get_model_version(a, 1), first, "get_model_version")
        got = [(m.name, m.version) for m in store.list_model_versions() if m.name in (a, b)]
        _equal(got, [(a, 1), (a, 2), (b, 1)], "list of every model")
        _equal([m.version for m in store.list_model_versions(a)], [1, 2], "list of one model")
        _raises(NotFoundError, lambda: store.get_model_version(a, 3), "unknown version")
        _raises(NotFoundError, lambda: store.get_model_version(_unique("m"), 1), "unknown model")


def check_model_version_race(factory: Callable[[], MetadataStore]) -> None:
    """Writers racing on one name (each with its own store) get distinct, gapless numbers."""
    name = _unique("model")
    writers, each = 4, 5

    def register(store: MetadataStore, _i: int) -> list[int]:
        return [store.add_model_version(_model(name)).version for _ in range(each)]

    got, _ = _race(factory, writers, register, "a racing writer")
    numbers = [n for part in got for n in part]
    _equal(sorted(numbers), list(range(1, writers * each + 1)), "numbers handed out")


def check_names_differing_in_case(factory: Callable[[], MetadataStore]) -> None:
    """A dataset or model named like an existing one but for case is refused with a
    ConflictError naming the existing spelling (they would share a folder on macOS and
    Windows); the existing one is untouched and keeps growing under its own spelling."""
    ds, model = _unique("case-ds"), _unique("case-model")  # lower case
    with _opened(factory) as store:
        store.add_dataset_version(_dataset(ds))
        store.add_model_version(_model(model))
        for other in (ds.upper(), ds.capitalize()):
            for what, fn in (
                ("add", partial(store.add_dataset_version, _dataset(other))),
                ("latest", partial(store.latest_dataset_version, other)),
            ):
                err = _raises(ConflictError, fn, f"{what} dataset {other!r} beside {ds!r}")
                if repr(ds) not in str(err):
                    raise AssertionError(f"the conflict names the existing spelling: {err}")
        err = _raises(
            ConflictError, partial(store.add_model_version, _model(model.upper())), "model"
        )
        if repr(model) not in str(err):
            raise AssertionError(f"the conflict names the existing spelling: {err}")
        _equal(
            [d.name for d in store.list_dataset_versions() if d.name.lower() == ds],
            [ds],
            "datasets after the refusals",
        )
        _equal(
            [m.name for m in store.list_model_versions() if m.name.lower() == model],
            [model],
            "models after the refusals",
        )
        _equal(store.latest_dataset_version(ds), 1, "the existing spelling")
        store.add_dataset_version(_dataset(ds, 2))
        _equal(store.add_model_version(_model(model)).version, 2, "the existing spelling")
        # a dataset and a model are different things: they may share a name in any case
        store.add_model_version(_model(ds.upper()))


def check_case_race(factory: Callable[[], MetadataStore]) -> None:
    """Writers racing to create one name in different cases (each with its own store): only
    one spelling is ever recorded."""
    stem = _unique("race")
    spellings = list(dict.fromkeys([stem, stem.upper(), stem.capitalize(), stem.title()]))
    outcomes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    stores = [factory() for _ in spellings]
    start = threading.Barrier(len(spellings))

    def work(store: MetadataStore, name: str) -> None:
        try:
            start.wait()
            for kind, add in (
                ("model", lambda: store.add_model_version(_model(name))),
                ("dataset", lambda: store.add_dataset_version(_dataset(name))),
            ):
                try:
                    add()
                    with lock:
                        outcomes.append(f"{kind}:{name}")
                except ConflictError:
                    pass
        except BaseException as exc:
            errors.append(exc)

    pairs = zip(stores, spellings, strict=True)
    threads = [threading.Thread(target=work, args=pair) for pair in pairs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        if errors:
            raise AssertionError(f"a racing writer failed: {errors[0]!r}") from errors[0]
        store = stores[0]
        models = {m.name for m in store.list_model_versions() if m.name.lower() == stem}
        datasets = {d.name for d in store.list_dataset_versions() if d.name.lower() == stem}
    finally:
        for s in stores:
            s.close()
    _equal(len(models), 1, f"spellings of one model recorded ({sorted(models)})")
    _equal(len(datasets), 1, f"spellings of one dataset recorded ({sorted(datasets)})")


def check_aliases(factory: Callable[[], MetadataStore]) -> None:
    """Aliases point at existing versions, move, and are deleted; mistakes are NotFound."""
    name = _unique("model")
    with _opened(factory) as store:
        _equal(store.get_aliases(name), {}, "aliases of an unknown model")
        for _ in range(3):
            store.add_model_version(_model(name))
        store.set_alias(name, "champion", 1)
        store.set_alias(name, "challenger", 2)
        _equal(store.get_aliases(name), {"champion": 1, "challenger": 2}, "two aliases")
        store.set_alias(name, "champion", 3)
        _equal(store.get_aliases(name), {"champion": 3, "challenger": 2}, "after a move")
        store.set_alias(name, "champion", 3)
        _equal(store.get_aliases(name)["champion"], 3, "setting the same target again")
        _raises(NotFoundError, lambda: store.set_alias(name, "x", 4), "alias to a missing version")
        _raises(NotFoundError, lambda: store.set_alias(_unique("m"), "x", 1), "unknown model")
        store.delete_alias(name, "challenger")
        _equal(store.get_aliases(name), {"champion": 3}, "after a delete")
        _raises(NotFoundError, lambda: store.delete_alias(name, "challenger"), "delete twice")


def check_timestamps_utc(factory: Callable[[], MetadataStore]) -> None:
    """Aware timestamps in any zone come back as the same instant, in UTC, to the microsecond."""
    name = _unique("ds")
    local = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with _opened(factory) as store:
        store.add_dataset_version(_dataset(name, created_at=local))
        got = store.get_dataset_version(name).created_at
        _equal(got, local, "instant")
        _equal(got.utcoffset(), timedelta(0), "UTC offset")
        run = store.add_run(_run(name, started_at=local))
        _equal(store.get_run(run.id).started_at.utcoffset(), timedelta(0), "run start offset")
        mv = store.add_model_version(_model(name, created_at=local))
        back = store.get_model_version(name, mv.version).created_at
        _equal((back, back.utcoffset()), (local, timedelta(0)), "model version created_at")


def check_json_values(factory: Callable[[], MetadataStore]) -> None:
    """JSON fields keep nesting, unicode, None, booleans, big ints and non-finite floats."""
    name = _unique("model")
    params = {
        "nested": {"list": [1, 2.5, None, True, "ß"], "empty": {}},
        "big": 2**53 + 1,
        "text": "naïve — ok ✓",
    }
    metrics = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "x": 0.1}
    with _opened(factory) as store:
        run = store.add_run(_run(name, params=params, metrics=metrics))
        back = store.get_run(run.id)
        _equal(back.params, params, "params")
        _equal(back.metrics["x"], 0.1, "a float")
        _equal(back.metrics["inf"], math.inf, "+inf")
        _equal(back.metrics["ninf"], -math.inf, "-inf")
        if not math.isnan(back.metrics["nan"]):
            raise AssertionError(f"NaN came back as {back.metrics['nan']!r}")


def check_persistence(factory: Callable[[], MetadataStore]) -> None:
    """What one store writes, a store opened afterwards on the same backend reads."""
    name = _unique("model")
    with _opened(factory) as store:
        store.add_dataset_version(_dataset(name))
        mv = store.add_model_version(_model(name))
        store.set_alias(name, "champion", mv.version)
    with _opened(factory) as again:
        _equal(again.get_dataset_version(name), _dataset(name), "dataset after reopening")
        _equal(again.get_model_version(name, 1), mv, "model version after reopening")
        _equal(again.get_aliases(name), {"champion": 1}, "aliases after reopening")


def check_close_twice(factory: Callable[[], MetadataStore]) -> None:
    """close() may be called more than once."""
    store = factory()
    store.close()
    store.close()


def check_monitor_events(factory: Callable[[], MetadataStore]) -> None:
    """Events come back as recorded, newest first, by model, kind and time; a dedupe key once."""
    from loopml.stores.records import MonitorEvent

    model, other = _unique("model"), _unique("model")
    t0 = datetime.now(UTC).replace(microsecond=0)
    evidence = {"psi": 0.31, "features": ["x", "y"], "n": 1200, "nan": math.nan}
    first = MonitorEvent(None, t0, model, "drift", "2 features drifted", evidence, "p", None)
    with _opened(factory) as store:
        stored = store.add_monitor_event(first)
        if stored is None or stored.id is None:
            raise AssertionError(f"an event without a dedupe key is stored: got {stored!r}")
        _equal(replace(stored, id=None, evidence={}), replace(first, evidence={}), "stored")
        if not math.isnan(stored.evidence["nan"]):
            raise AssertionError(f"evidence keeps NaN: {stored.evidence!r}")
        key = _unique("retrain")
        later = MonitorEvent(None, t0 + timedelta(seconds=5), model, "retrain", "on drift",
                             {"rows": 10}, None, key)  # fmt: skip
        got = store.add_monitor_event(later)
        if got is None:
            raise AssertionError("a new dedupe key is stored")
        _equal(store.add_monitor_event(replace(later, reason="again")), None, "same key")
        _equal(store.get_monitor_event(key), got, "get by dedupe key")
        _equal(store.get_monitor_event(_unique("none")), None, "an unknown dedupe key")
        store.add_monitor_event(replace(first, model=other))
    with _opened(factory) as store:
        mine = store.list_monitor_events(model=model)
        _equal([e.kind for e in mine], ["retrain", "drift"], "newest first")
        _equal(mine[0], got, "read back")
        _equal([e.kind for e in store.list_monitor_events(model=model, kind="drift")],
               ["drift"], "of one kind")  # fmt: skip
        since = store.list_monitor_events(model=model, since=t0 + timedelta(seconds=1))
        _equal([e.kind for e in since], ["retrain"], "since a time")
        _equal(len(store.list_monitor_events(model=model, limit=1)), 1, "a limit")
        _raises(InvalidInputError, lambda: store.list_monitor_events(limit=0), "limit 0")
        bad = replace(first, model="")
        _raises(InvalidInputError, lambda: store.add_monitor_event(bad), "an empty model")
        bad = replace(first, evidence=[1, 2])  # type: ignore[arg-type]
        _raises(InvalidInputError, lambda: store.add_monitor_event(bad), "evidence a list")


def check_monitor_event_dedupe_race(factory: Callable[[], MetadataStore]) -> None:
    """Writers recording one dedupe key at once (each its own store): exactly one gets it."""
    from loopml.stores.records import MonitorEvent

    key, model = _unique("once"), _unique("model")
    at = datetime.now(UTC)

    def record(store: MetadataStore, i: int) -> bool:
        event = MonitorEvent(None, at, model, "retrain", f"writer {i}", {"i": i}, None, key)
        return store.add_monitor_event(event) is not None

    got, _ = _race(factory, 4, record, "a racing event writer")
    _equal(sorted(got), [False, False, False, True], "writers told the event was theirs")
    with _opened(factory) as store:
        _equal(len(store.list_monitor_events(model=model)), 1, "events stored")


def check_leases(factory: Callable[[], MetadataStore]) -> None:
    """A lease is held by one holder until it expires or is released; its holder renews it."""
    name = _unique("lease")
    with _opened(factory) as store:
        _equal(store.get_lease(name), None, "a lease never taken")
        lease = store.acquire_lease(name, "a", 60)
        if lease is None or lease.holder != "a" or lease.name != name:
            raise AssertionError(f"a free lease is granted: got {lease!r}")
        _equal(store.acquire_lease(name, "b", 60), None, "held by another")
        renewed = store.acquire_lease(name, "a", 120)
        if renewed is None or renewed.expires_at <= lease.expires_at:
            raise AssertionError(f"the holder renews: {lease!r} then {renewed!r}")
        held = store.get_lease(name)
        if held is None or held.holder != "a":
            raise AssertionError(f"get_lease names the holder: {held!r}")
        _equal(store.release_lease(name, "b"), False, "released by a non-holder")
        _equal(store.release_lease(name, "a"), True, "released by its holder")
        taken = store.acquire_lease(name, "b", 0.05)
        if taken is None or taken.holder != "b":
            raise AssertionError(f"a released lease is granted to another: {taken!r}")
        deadline = taken.expires_at + timedelta(seconds=0.05)
        while datetime.now(UTC) < deadline:
            pass
        after = store.acquire_lease(name, "c", 60)
        if after is None or after.holder != "c":
            raise AssertionError(f"an expired lease is granted to another: {after!r}")
        _raises(InvalidInputError, lambda: store.acquire_lease(name, "c", 0), "ttl 0")
        _raises(InvalidInputError, lambda: store.acquire_lease("", "c", 5), "empty name")


def check_lease_race(factory: Callable[[], MetadataStore]) -> None:
    """Holders asking for one free lease at once (each its own store): exactly one is granted."""
    name = _unique("lease")

    def take(store: MetadataStore, i: int) -> str | None:
        got = store.acquire_lease(name, f"holder-{i}", 60)
        return None if got is None else got.holder

    got, _ = _race(factory, 6, take, "a racing lease taker")
    winners = [g for g in got if g is not None]
    _equal(len(winners), 1, f"holders granted the lease (got {got})")
    with _opened(factory) as store:
        held = store.get_lease(name)
        _equal(None if held is None else held.holder, winners[0], "the stored holder")


MONITOR_CHECKS: list[Check] = [
    check_monitor_events,
    check_monitor_event_dedupe_race,
    check_leases,
    check_lease_race,
]


def metadata_store_checks() -> Iterator[tuple[str, Check]]:
    """``(name, check)`` for every check of the MetadataStore contract."""
    from loopml.testing.aliases import ALIAS_CHECKS
    from loopml.testing.deployments import DEPLOYMENT_CHECKS
    from loopml.testing.feedback import FEEDBACK_CHECKS

    checks: list[Check] = [
        check_dataset_round_trip,
        check_dataset_versions_ordering,
        check_dataset_conflicts,
        check_dataset_not_found,
        check_dataset_lineage_fields,
        check_source_positions,
        check_dataset_delete,
        check_run_round_trip,
        check_run_owner,
        check_runs_newest_first,
        check_run_id_prefixes,
        check_run_tags,
        check_run_steps,
        check_run_children_and_delete,
        check_model_version_numbering,
        check_model_version_race,
        check_names_differing_in_case,
        check_case_race,
        check_aliases,
        *ALIAS_CHECKS,
        *DEPLOYMENT_CHECKS,
        *FEEDBACK_CHECKS,
        *MONITOR_CHECKS,
        check_timestamps_utc,
        check_json_values,
        check_persistence,
        check_close_twice,
    ]
    for check in checks:
        yield check.__name__.removeprefix("check_"), check


def check_metadata_store(store_factory: Callable[[], MetadataStore]) -> None:
    """Run every MetadataStore check against ``store_factory``; the first failure raises."""
    _run_all(metadata_store_checks(), store_factory)
