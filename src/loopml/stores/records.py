"""Plain records that cross the metadata store boundary.

They are frozen dataclasses with JSON-friendly fields, so every backend stores the same thing
and ``--json`` output is ``dataclasses.asdict`` away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version of a dataset in the lake."""

    name: str
    version: int
    sha256: str  # of the canonical content (the Parquet table as written)
    path: str  # lake-relative folder, e.g. datasets/cancer/v=1
    num_rows: int
    schema: list[dict[str, Any]]  # [{"name", "type", "nullable"}]
    stats: dict[str, dict[str, Any]]  # column -> statistics
    source: str  # where it came from (file path or URI)
    created_at: datetime
    num_bytes: int = 0
    parent: int | None = None  # the version this one extends (append) or replaces
    mode: str = "replace"  # "replace": a fresh snapshot; "append": the parent's rows + new ones
    # the Parquet files holding the rows, lake-relative, in order (an append version lists its
    # parent's files first); empty: every part under ``path`` (versions before manifests)
    parts: list[str] = field(default_factory=list)
    partition_by: list[str] = field(default_factory=list)  # hive folders col=value/

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


RUN_STATUSES = ("running", "succeeded", "failed", "gate_failed", "aborted", "pruned")


@dataclass(frozen=True)
class Run:
    """One training run: what went in, what came out, how long it took."""

    id: str
    name: str  # the model name the run trains
    status: str  # one of RUN_STATUSES
    started_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset_name: str | None = None
    dataset_version: int | None = None
    git_commit: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    error: str | None = None
    model_version: int | None = None
    # who runs it: {"host", "pid", "started"} (process start time); a run whose owner
    # process is gone is reported as aborted
    owner: dict[str, Any] | None = None
    parent_id: str | None = None  # a trial's search, an incremental run's ... (child of)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version: an artifact plus what it was trained on and how it scored."""

    name: str
    version: int  # 0 in a draft; the store assigns the next number
    run_id: str
    artifact_sha256: str
    flavor: str  # "sklearn" or "lightgbm"
    signature: dict[str, Any]
    metrics: dict[str, Any]
    dataset_name: str | None
    dataset_version: int | None
    created_at: datetime
    size_bytes: int = 0
    # type names the user explicitly trusted beyond loopml's allowlist (e.g. a function
    # inside a FunctionTransformer); recorded at registration, honoured on load
    trusted: list[str] = field(default_factory=list)
    status: str = "active"  # or "archived"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: from which version to which (None: set first, or removed)."""

    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    at: datetime
    actor: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class RunStep:
    """A metric of a run at one step (an epoch, a trial, a boosting round)."""

    run_id: str
    key: str
    step: int
    value: float | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


#: how a deployment splits its traffic: one version, fixed weights, or a canary on a primary
DEPLOYMENT_MODES = ("single", "ab", "canary")


@dataclass(frozen=True)
class Deployment:
    """How a served model name splits its traffic among versions, stored so servers agree.

    ``routes`` are ``(version, percent)`` pairs summing to 100: one pair for ``single``, the
    fixed weights for ``ab``, ``(primary, 100 - p), (canary, p)`` for ``canary``. ``shadow``
    scores every request without answering. ``revision`` counts the changes (1 first); the
    store assigns it, and a change names the revision it replaces (compare-and-set).
    """

    name: str
    mode: str  # one of DEPLOYMENT_MODES
    routes: tuple[tuple[int, float], ...]
    shadow: int | None = None
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        at = data.get("updated_at")
        return cls(
            name=str(data["name"]),
            mode=str(data["mode"]),
            routes=tuple((int(v), float(w)) for v, w in data["routes"]),
            shadow=None if data.get("shadow") is None else int(data["shadow"]),
            revision=int(data.get("revision") or 0),
            updated_at=datetime.fromisoformat(at) if isinstance(at, str) else at,
            updated_by=data.get("updated_by"),
            reason=data.get("reason"),
        )

    @property
    def answering(self) -> tuple[int, ...]:
        """The versions that answer some traffic (a weight above 0), in route order."""
        return tuple(v for v, w in self.routes if w > 0)


@dataclass(frozen=True)
class DeploymentEvent:
    """One change of a deployment: who, when, why, from what (None: created) to what."""

    name: str
    revision: int  # the revision the change made
    at: datetime
    actor: str | None
    reason: str | None
    old: Deployment | None
    new: Deployment

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Feedback:
    """An outcome that arrived after a prediction: its true label, a reward, or both.

    The same ``(prediction_id, label, reward)`` is stored once, however often it arrives.
    """

    prediction_id: str
    label: Any | None
    reward: float | None
    received_at: datetime
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class MonitorEvent:
    """One thing the monitor saw or did (drift, decay, a retrain, a rollout step, an error),
    with why and the numbers behind it. ``dedupe``, when given, is unique: an event with a
    key recorded already is not recorded again."""

    id: int | None
    at: datetime
    model: str
    kind: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    dedupe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Lease:
    """Who holds the named lease, until when (a holder that stops renewing loses it)."""

    name: str
    holder: str
    expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class OnlineCheckpoint:
    """One committed checkpoint of an online learner: its state (an artifact) and the stream
    position after the last event it learned, stored together in one row, so that a resumed
    learner never learns an event twice or skips one.

    ``seq`` counts the checkpoints of one ``(name, stream)`` from 1; the store refuses a
    ``seq`` that is taken (two learners on one stream: the second one's commit fails).
    """

    name: str  # the model the learner trains
    stream: str  # the stream's key (its URI without secrets, or feedback:<model>)
    seq: int
    artifact_sha256: str  # the checkpoint document: the learner's state and the loop's
    checksum: str  # sha256 of the learner's state alone (OnlineLearner.checksum())
    position: dict[str, Any]  # where to resume reading: after the last event learned
    events: int  # events consumed up to the position (dead-lettered and unlabelled included)
    learned: int  # events learned up to the position
    run_id: str
    created_at: datetime
    metrics: dict[str, Any] = field(default_factory=dict)  # prequential snapshot at the position

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[no-any-return]
