"""The store interfaces: the walls every stage builds against.

Each interface is small; backends are chosen by URI scheme (see ``loopml.stores.registry``).
The contract every backend must satisfy is in ``loopml.testing``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa

from loopml.errors import InvalidInputError, NotFoundError
from loopml.stores.records import (
    AliasEvent,
    DatasetVersion,
    Deployment,
    DeploymentEvent,
    Feedback,
    Lease,
    ModelVersion,
    MonitorEvent,
    OnlineCheckpoint,
    Run,
    RunStep,
)

#: The fewest hex digits that abbreviate an id (as git abbreviates commits).
ID_PREFIX_MIN = 4
ID_MAX = 64
WHOLE_ID = 32  # hex digits of the ids loopml hands out (uuid4)
#: How many candidates an ambiguous prefix lists.
CANDIDATES_SHOWN = 5
_HEX = re.compile(r"[0-9a-fA-F]+")


def id_prefix(text: object, what: str = "run") -> str:
    """``text`` as an id prefix: 4 to 64 hex digits, lowercased. InvalidInputError otherwise.

    Checked before it reaches a query, so no wildcard (``%``, ``_``, ``*``) ever does.
    """
    if not isinstance(text, str) or not _HEX.fullmatch(text):
        raise InvalidInputError(
            f"{text!r} is not a {what} id or the start of one",
            where={what: text},
            hint=f"Give the {what} id, or at least its first {ID_PREFIX_MIN} hex digits",
        )
    if not ID_PREFIX_MIN <= len(text) <= ID_MAX:
        raise InvalidInputError(
            f"{what} id prefix {text!r} has {len(text)} hex digits",
            where={what: text},
            hint=f"Give at least {ID_PREFIX_MIN} (and at most {ID_MAX}) hex digits of the id",
        )
    return text.lower()


def is_id_prefix(text: object) -> bool:
    """Whether ``text`` reads as hex digits (of any length), i.e. as a possible id prefix."""
    return isinstance(text, str) and bool(_HEX.fullmatch(text))


def ambiguous_id(
    what: str, prefix: str, candidates: Sequence[str], more: bool
) -> InvalidInputError:
    """The error for a prefix that several ids start with; ``candidates`` describe a few."""
    listed = "; ".join(candidates[:CANDIDATES_SHOWN])
    if more or len(candidates) > CANDIDATES_SHOWN:
        listed += "; and more"
    return InvalidInputError(
        f"{what} id prefix {prefix!r} is ambiguous; it begins several ids: {listed}",
        where={what: prefix},
        hint=f"Give more digits of the {what} id",
        code="ambiguous_id",
    )


TAG_KEY_MAX = 256


def check_tags(tags: Mapping[str, str], delete: Sequence[str] = ()) -> None:
    """Tag keys are 1 to 256 characters and values strings; InvalidInputError otherwise."""
    for key, value in [*tags.items(), *((k, "") for k in delete)]:
        if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX:
            raise InvalidInputError(
                f"tag key {key!r} must be a string of 1 to {TAG_KEY_MAX} characters",
                where={"tag": key},
                hint="Give tags as KEY=VALUE, e.g. team=risk",
            )
        if not isinstance(value, str):
            raise InvalidInputError(
                f"tag {key!r} has the value {value!r}, which is not a string",
                where={"tag": key},
                hint="Tag values are strings; use params or metrics for numbers",
            )


def check_step(key: object, step: object, value: object) -> None:
    """A step's key is a non-empty string, its step an int >= 0, its value a number."""
    if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX:
        raise InvalidInputError(
            f"step metric key {key!r} must be a string of 1 to {TAG_KEY_MAX} characters",
            where={"key": key},
            hint="Name the metric, e.g. 'cv.roc_auc'",
        )
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InvalidInputError(
            f"step {step!r} of {key!r} must be an integer, 0 or more",
            where={"key": key, "step": step},
            hint="Number steps 0, 1, 2, ... (an epoch, a fold, a trial)",
        )
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidInputError(
            f"step {step} of {key!r} has the value {value!r}, which is not a number",
            where={"key": key, "step": step},
            hint="Log a float (or None for a missing value)",
        )


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(
            f"limit must be a positive integer, got {limit!r}",
            where={"field": "limit"},
            hint="Pass limit=1 or more",
        )
    return limit


class Unchecked(Enum):
    """The type of :data:`ANY_VERSION`."""

    ANY = "any"


#: ``expected=ANY_VERSION``: move an alias wherever it points now (no compare-and-set).
ANY_VERSION = Unchecked.ANY
#: what a caller believes an alias points at: a version, None (no such alias) or ANY_VERSION
Expected = int | None | Literal[Unchecked.ANY]
#: a version's status: served and listed, listed only with --all, or deleted (hidden, and its
#: number never reused)
VERSION_STATUSES = ("active", "archived", "deleted")


class MetadataStore(ABC):
    """Datasets, runs, model versions and aliases. Transactions; no file content.

    Names that differ only in case are one name (they share a folder on macOS and Windows):
    creating a dataset or model spelled like an existing one but for case is a ConflictError
    (code ``name_taken``) naming the existing spelling.
    """

    uri: str

    # datasets
    @abstractmethod
    def latest_dataset_version(self, name: str) -> int:
        """Highest version number of ``name``, 0 when there is none.

        ConflictError when there is none but a dataset of the same name in another case.
        """

    @abstractmethod
    def add_dataset_version(
        self, dv: DatasetVersion, position: tuple[str, dict[str, Any]] | None = None
    ) -> DatasetVersion:
        """Insert ``dv`` as given. ConflictError if (name, version) or (name, sha256) exists,
        or the name is an existing dataset's in another case.

        ``position``: ``(source key, JSON object)``, stored as the source position of
        ``(dv.name, key)`` in the same transaction (see :meth:`get_source_position`)."""

    @abstractmethod
    def get_source_position(self, dataset: str, key: str) -> dict[str, Any] | None:
        """Where the source ``key`` stopped for ``dataset`` (as last recorded), None if never."""

    @abstractmethod
    def dataset_users(self, name: str, version: int) -> list[str]:
        """What depends on ``name@version`` ("model m@2", "run <id>", "dataset name@4" for an
        append version reading its files); empty when nothing does."""

    @abstractmethod
    def delete_dataset_version(self, name: str, version: int) -> DatasetVersion:
        """Remove the record of one version (its number is not reused while a later one
        exists); NotFoundError if absent. The caller checks :meth:`dataset_users` first."""

    @abstractmethod
    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """One version, or the latest when ``version`` is None. NotFoundError if absent."""

    @abstractmethod
    def find_dataset_version(self, name: str, sha256: str) -> DatasetVersion | None:
        """The version of ``name`` whose content hash is ``sha256``, if any."""

    @abstractmethod
    def list_dataset_versions(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions (of one dataset, or of all), ordered by name then version."""

    # runs
    @abstractmethod
    def add_run(self, run: Run) -> Run:
        """Insert a new run. ConflictError if the id exists."""

    @abstractmethod
    def update_run(self, run: Run) -> Run:
        """Replace the stored run with the same id. NotFoundError if absent."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """NotFoundError if absent."""

    @abstractmethod
    def list_runs(
        self, name: str | None = None, limit: int = 100, *, parent: str | None = None
    ) -> list[Run]:
        """Newest first; of one model when ``name`` is given, children of run ``parent``
        (their ``parent_id``) when that is."""

    @abstractmethod
    def set_run_tags(self, run_id: str, tags: Mapping[str, str], delete: Sequence[str] = ()) -> Run:
        """Set ``tags`` on the run and remove the keys in ``delete``, in one transaction (a
        concurrent change of other tags is kept). Keys and values are strings, keys 1 to
        256 characters; InvalidInputError otherwise, NotFoundError for an unknown run or a
        key in ``delete`` the run has not got. Returns the updated run."""

    @abstractmethod
    def log_step(
        self, run_id: str, key: str, step: int, value: float | None, at: datetime | None = None
    ) -> RunStep:
        """Record metric ``key`` of the run at ``step`` (0 or more); logging a step again
        replaces its value. NotFoundError for an unknown run, InvalidInputError for an
        empty key, a negative step or a value that is not a number."""

    def log_steps(
        self,
        run_id: str,
        rows: Sequence[tuple[str, int, float | None]],
        at: datetime | None = None,
    ) -> list[RunStep]:
        """Record many ``(key, step, value)`` rows of the run at once, as :meth:`log_step`
        does each (a step logged again is replaced; of one given twice the last wins); the
        SQL store writes them in one transaction, all or none. InvalidInputError naming the
        row that is not one, NotFoundError for an unknown run."""
        return [self.log_step(run_id, key, step, value, at) for key, step, value in rows]

    @abstractmethod
    def list_steps(self, run_id: str, key: str | None = None) -> list[RunStep]:
        """The run's steps (of one key), ordered by key then step."""

    @abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Delete the run and its steps. ConflictError (code ``run_in_use``) naming the
        model version when one was registered from it; NotFoundError when absent."""

    @abstractmethod
    def run_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of the runs whose id starts with ``prefix``, sorted, at most ``limit``.

        ``prefix`` is checked with :func:`id_prefix` (4+ hex digits, any case) before it
        reaches the backend; InvalidInputError for anything else.
        """

    def resolve_run(self, ref: str) -> Run:
        """The run whose id is ``ref``, or the one run whose id starts with it.

        A prefix is 4 or more hex digits (any case), as git takes an abbreviated commit. An
        ambiguous prefix is an InvalidInputError (code ``ambiguous_id``) listing a few
        candidates; an unknown one a NotFoundError. Ids that are not hex match only whole.
        """
        if not is_id_prefix(ref):
            return self.get_run(ref)
        prefix = id_prefix(ref, "run")
        ids = self.run_ids_with_prefix(prefix, limit=CANDIDATES_SHOWN + 1)
        if prefix in ids or ref in ids:
            return self.get_run(prefix if prefix in ids else ref)
        if not ids:
            try:
                return self.get_run(ref)  # a whole id stored as it was given (upper case)
            except NotFoundError:
                if len(prefix) >= WHOLE_ID:
                    raise
            raise NotFoundError(
                f"no run id starts with {ref!r}",
                where={"run": ref},
                hint="List runs with 'loopml runs list'",
            )
        if len(ids) == 1:
            return self.get_run(ids[0])
        described = []
        for run_id in ids[:CANDIDATES_SHOWN]:
            run = self.get_run(run_id)
            described.append(f"{run_id} ({run.name}, {run.started_at:%Y-%m-%d %H:%M})")
        raise ambiguous_id("run", ref, described, more=len(ids) > CANDIDATES_SHOWN)

    # models
    @abstractmethod
    def add_model_version(self, mv: ModelVersion) -> ModelVersion:
        """Register ``mv`` under the next version number of its name; returns it numbered.

        ConflictError when the name is an existing model's in another case.
        """

    @abstractmethod
    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """NotFoundError if absent."""

    @abstractmethod
    def list_model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Ordered by name then version."""

    @abstractmethod
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        expected: Expected = ANY_VERSION,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasEvent | None:
        """Point ``alias`` of model ``name`` at ``version`` (which must exist and be active),
        as a compare-and-set, and log the move, in one transaction.

        ``expected`` is the version the caller believes the alias points at now (None: that
        it does not exist); when it points elsewhere, ConflictError (code ``alias_moved``)
        naming the current version, and nothing changes. Of two concurrent moves with the
        same ``expected`` exactly one wins. Returns the :class:`AliasEvent` appended, None
        when the alias already pointed at ``version`` (nothing logged).
        """

    @abstractmethod
    def delete_alias(
        self,
        name: str,
        alias: str,
        *,
        expected: Expected = ANY_VERSION,
        actor: str | None = None,
        reason: str | None = None,
    ) -> AliasEvent:
        """Remove an alias (compare-and-set as :meth:`set_alias`) and log it. NotFoundError
        if absent."""

    @abstractmethod
    def list_alias_events(
        self, name: str, alias: str | None = None, limit: int = 100
    ) -> list[AliasEvent]:
        """The alias moves of model ``name`` (of one alias), newest first."""

    @abstractmethod
    def set_model_version_status(self, name: str, version: int, status: str) -> ModelVersion:
        """Mark a version ``active`` or ``archived``. ConflictError (code ``version_aliased``)
        naming the alias when one points at it and it is being archived; NotFoundError for
        an unknown (or deleted) version."""

    @abstractmethod
    def delete_model_version(self, name: str, version: int) -> ModelVersion:
        """Delete a version's record: from then on it is in no listing and no lookup, and its
        number is never given again. ConflictError (code ``version_aliased``) naming the
        alias when one points at it. Artifacts are not touched (they are content-addressed
        and may be shared). Returns the record as it was."""

    @abstractmethod
    def get_aliases(self, name: str) -> dict[str, int]:
        """alias -> version for one model."""

    # deployments (how a served name splits traffic among versions)
    @abstractmethod
    def get_deployment(self, name: str) -> Deployment | None:
        """The deployment of served name ``name``, None when there is none."""

    @abstractmethod
    def set_deployment(self, dep: Deployment, *, expected_revision: int | None) -> Deployment:
        """Store ``dep`` as a compare-and-set on its revision and log the change, in one
        transaction; returns it as stored, at revision ``expected_revision + 1`` (1 first).

        ``expected_revision`` is the revision the caller believes is stored (None: that
        there is no deployment of that name); when another is, ConflictError (code
        ``deployment_moved``) naming the current revision and who made it, and nothing
        changes. Of two concurrent changes naming the same revision exactly one wins.
        InvalidInputError for a malformed deployment (mode, shares not summing to 100, a
        version twice). Whether the versions exist is checked by the registry.
        """

    @abstractmethod
    def list_deployments(self) -> list[Deployment]:
        """Every deployment, ordered by name."""

    @abstractmethod
    def list_deployment_events(self, name: str, limit: int = 100) -> list[DeploymentEvent]:
        """The changes of deployment ``name`` (who, when, why, old, new), newest first."""

    # feedback (outcomes that arrive after a prediction)
    @abstractmethod
    def add_feedback(self, items: Sequence[Feedback]) -> int:
        """Store ``items``; returns how many were new. An item whose ``(prediction_id,
        label, reward)`` is stored already (or comes twice in ``items``) is skipped, also
        under concurrent writers. A whole-number float label is stored as an int (1.0 is
        1). InvalidInputError naming the item for an empty id, neither label nor reward,
        or a reward that is not a finite number; then nothing is stored."""

    @abstractmethod
    def list_feedback(
        self,
        *,
        prediction_ids: Sequence[str] | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[Feedback]:
        """Stored feedback, oldest received first: of some predictions, received at or
        after ``since``, at most ``limit``."""

    # monitor events (what the monitor saw and did) and leases (one actor at a time)
    @abstractmethod
    def add_monitor_event(self, event: MonitorEvent) -> MonitorEvent | None:
        """Store ``event`` (its ``id`` is ignored); returns it as stored, with its id. When
        its ``dedupe`` key is stored already (also by a concurrent writer) nothing is
        stored and None is returned: of many writers of one key exactly one gets the event.
        InvalidInputError for an empty model or kind, or evidence that is not a mapping."""

    @abstractmethod
    def get_monitor_event(self, dedupe: str) -> MonitorEvent | None:
        """The event recorded under ``dedupe``, None when there is none."""

    @abstractmethod
    def list_monitor_events(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[MonitorEvent]:
        """Recorded events, newest first: of one model, of one kind, at or after ``since``."""

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take lease ``name`` for ``holder`` for ``ttl_s`` seconds from now, as one
        compare-and-set: granted when nobody holds it, when its holder's time ran out, or
        when ``holder`` holds it already (a renewal). None when another holder's lease is
        still running (then nothing changes). Of concurrent callers at most one is granted."""

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """Give lease ``name`` up if ``holder`` holds it; whether it did."""

    @abstractmethod
    def get_lease(self, name: str) -> Lease | None:
        """Who holds lease ``name`` and until when (possibly expired); None if never taken."""

    # online learning: checkpoints (state + stream position, committed together)
    @abstractmethod
    def add_online_checkpoint(
        self, cp: OnlineCheckpoint, steps: Sequence[tuple[str, int, float | None]] = ()
    ) -> OnlineCheckpoint:
        """Commit ``cp`` (its state artifact already stored) in one transaction, with the
        ``(key, step, value)`` rows ``steps`` of its run (:meth:`log_steps`). Its ``seq``
        must follow the last stored one of ``(cp.name, cp.stream)`` (1 for the first):
        ConflictError (code ``checkpoint_taken``) otherwise, also when two writers race;
        InvalidInputError naming a field that is not what the store holds."""

    @abstractmethod
    def latest_online_checkpoint(self, name: str, stream: str) -> OnlineCheckpoint | None:
        """The checkpoint with the highest ``seq`` of ``(name, stream)``; None before the first."""

    @abstractmethod
    def list_online_checkpoints(
        self, name: str, stream: str | None = None, limit: int = 100
    ) -> list[OnlineCheckpoint]:
        """Checkpoints of model ``name`` (on one stream), newest first."""

    @abstractmethod
    def list_feedback_after(
        self, after: int, limit: int = 1000, *, until: datetime | None = None
    ) -> list[tuple[int, Feedback]]:
        """Stored feedback in the order it was stored, as ``(sequence, feedback)`` pairs with
        a sequence above ``after`` (0: from the first), received before ``until``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class Lake(ABC):
    """Tables (Parquet) and report files under a root folder or bucket prefix.

    Paths are relative, ``/``-separated and checked: no ``..``, no absolute paths.
    """

    uri: str

    @abstractmethod
    def write_table(
        self,
        path: str,
        table: pa.Table,
        *,
        dictionary: Sequence[str] | None = None,
        statistics: Sequence[str] | None = None,
    ) -> str:
        """Write ``table`` as one Parquet file at ``path``, atomically. Returns its URL.

        ``dictionary``: the columns given dictionary pages (default: the text columns);
        ``statistics``: the columns given min/max statistics (default: every column)."""

    @abstractmethod
    def read_table(self, path: str) -> pa.Table:
        """Read a Parquet file, or every ``*.parquet`` under a folder (schemas unified)."""

    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> str:
        """Write a file atomically. Returns its URL."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """NotFoundError if absent."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of the files under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file or a folder with everything in it; no error if absent."""

    @abstractmethod
    def url(self, path: str = "") -> str:
        """The absolute URL of ``path`` (``file:///...`` or ``s3://...``) for people to open."""


class ArtifactStore(ABC):
    """Immutable blobs addressed by their sha256; checked on every read."""

    uri: str

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its sha256 in hex."""

    @abstractmethod
    def get(self, sha256: str) -> bytes:
        """The blob; NotFoundError if absent, IntegrityError if its content does not match."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def url(self, sha256: str) -> str:
        """Where the blob lies, for people."""
