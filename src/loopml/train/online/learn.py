"""The online learning process: test-then-train on a stream, checkpointed, resumable.

:func:`learn` reads labelled events (:mod:`loopml.train.online.events`) and, for each one,
predicts it, scores the prediction (:class:`~loopml.train.online.metrics.Prequential`),
feeds the error to the drift detector, then learns it (``learn_one``, or ``learn_many`` on
mini-batches of ``online.batch``). An event without the target is only predicted; an event
that is not a JSON object, or whose field has the wrong type, goes to the dead letters with
its reason. Nothing stops the learner but the end of the run (``max_events``,
``idle_timeout``, Ctrl-C) or a stream that stays unreachable past ``retry_for`` seconds.

Every ``checkpoint_every`` events or ``checkpoint_seconds`` seconds — always between two
mini-batches, so that the state is "every event up to here learned" — the state and the
stream position are committed together (:mod:`loopml.train.online.checkpoints`). A later
start resumes from the last checkpoint: the model it reaches is the one an uninterrupted
run (or an offline replay of the same events) reaches, byte for byte (same ``checksum()``).

A checkpoint may also become a model version: with ``online.alias`` set (``online`` by
default) it is registered (the ``river`` flavor) and the alias moved to it, at most once
every ``online_swap_seconds`` (a setting), so a ``loopml serve`` following the alias swaps
it in with its usual warm-up. Drift found on the error stream is recorded as a monitor
event of kind ``drift`` (one per detection, keyed by the event's number) for the closed
loop's policies. The windowed metrics are recorded as steps of the run (``online.<metric>``
at step = events learned), the cumulative ones as its metrics.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from loopml.errors import ConfigError, InvalidInputError, StoreError
from loopml.registry.flavors.river import OBSERVE_EVERY, RIVER, UNKNOWN, label_key
from loopml.stores.records import MonitorEvent, OnlineCheckpoint, Run
from loopml.train.online import fast
from loopml.train.online.checkpoints import Checkpoints
from loopml.train.online.events import (
    RETRYABLE,
    Batch,
    DeadLetters,
    Event,
    EventStream,
    open_stream,
)
from loopml.train.online.metrics import AUC_BINS, EPS
from loopml.utils import new_id, process_owner, utcnow

if TYPE_CHECKING:
    from loopml.project.online import OnlineSpec
    from loopml.train.online.learner import OnlineLearner
    from loopml.workspace import Workspace

Progress = Callable[[str], None]
READ_MOST = 500  # events asked of the stream at once
POLL_S = 0.2  # how long one read waits for the first event
#: what changes the learned model: a checkpoint made under other values is not resumed
FINGERPRINT_KEYS = (
    "learner",
    "params",
    "preprocessing",
    "task",
    "target",
    "features",
    "time",
    "ignore",
    "strings",
    "positive",
    "batch",
)
NUMBER, TEXT, IGNORED = "number", "text", "ignored"
_KIND_OF = {str: TEXT, float: NUMBER, int: NUMBER, bool: NUMBER}
BINARY = "binary"  # the fast path of a two-class learner (see _Loop._ready)
MAX_SHAPES = 256  # event shapes (field names and value types) whose checks are remembered


@dataclass(slots=True)
class _Shape:
    """What the checks of :meth:`_Loop.handle` find for every event of one shape (the same
    field names in the same order, each value of the same type), found once: the fields
    the learner's input leaves out, those it turns into floats (integers, booleans), and
    whether its values are numbers only (then one sum tells that they are all finite)."""

    drop: tuple[str, ...]
    convert: tuple[str, ...]
    floats: tuple[str, ...]
    numeric: bool
    size: int  # of the learner's input
    covered: bool = False  # the learner's fields hold every feature of the shape


@dataclass
class LearnResult:
    """What one run of the learner did."""

    run: Run
    stream: str
    events: int  # consumed by this run
    learned: int  # learned by this run
    predicted_only: int  # events without a target, by this run
    dead_letters: int  # by this run
    checkpoints: int  # committed by this run
    versions: list[int]  # registered by this run
    drifts: int  # detections by this run
    resumed_from: int | None  # the checkpoint started from
    total_events: int  # consumed over every run, up to the last checkpoint
    metrics: dict[str, Any]
    checksum: str  # of the learner's state at the end
    seconds: float
    checkpoint_ms: list[float] = field(default_factory=list)
    stopped: str = ""  # why the run ended: max_events, idle, interrupted

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.id,
            "stream": self.stream,
            "events": self.events,
            "learned": self.learned,
            "predicted_only": self.predicted_only,
            "dead_letters": self.dead_letters,
            "checkpoints": self.checkpoints,
            "versions": self.versions,
            "drifts": self.drifts,
            "resumed_from": self.resumed_from,
            "total_events": self.total_events,
            "metrics": self.metrics,
            "checksum": self.checksum,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "stopped": self.stopped,
        }


def fingerprint(spec: OnlineSpec) -> dict[str, Any]:
    full = spec.to_dict()
    return {k: full.get(k) for k in FINGERPRINT_KEYS}


# -- one event's fields -----------------------------------------------------------------------


def check_kinds(
    record: dict[str, Any], spec: OnlineSpec, kinds: dict[str, str]
) -> tuple[dict[str, str] | None, str | None]:
    """The kinds (number or text) the features of ``record`` show for the first time, and
    why the event is malformed: a feature that changes kind (a number in earlier events,
    text now) would be learned as a category, or dropped as text, without a word.

    ``kinds`` also remembers the fields that are not features (``IGNORED``), so that each
    field's name is looked at once.
    """
    new: dict[str, str] | None = None
    kind_of = _KIND_OF
    for name, value in record.items():
        kind = kind_of.get(value.__class__)
        if kind is None:
            continue  # null is missing; arrays and objects are refused by the learner
        seen = kinds.get(name)
        if seen is kind:
            continue
        if seen is None:
            if not spec.is_feature(name):
                kinds[name] = IGNORED
                continue
            if new is None:
                new = {}
            new[name] = kind
        elif seen != kind and seen != IGNORED:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return None, f"field {name!r} is {kind} ({shown}); earlier events gave {seen}"
    return new, None


def check_target(record: dict[str, Any], spec: OnlineSpec) -> str | None:
    """Why the target of ``record`` cannot be learned (None: it can, or it is absent)."""
    y = record.get(spec.target)
    if y is None:
        return None
    if spec.task == "regression":
        if isinstance(y, bool) or not isinstance(y, int | float) or not math.isfinite(y):
            return f"target {spec.target!r} is {y!r}; a regression target is a finite number"
        return None
    if isinstance(y, float) and not (math.isfinite(y) and y.is_integer()):
        return f"target {spec.target!r} is {y!r}; a class is text, an integer or true/false"
    if not isinstance(y, bool | int | float | str):
        return f"target {spec.target!r} is {type(y).__name__}; a class is text or a number"
    return None


# -- the loop ---------------------------------------------------------------------------------


class _Loop:
    """The state of one run of the learner (see :func:`learn`)."""

    def __init__(
        self,
        ws: Workspace,
        spec: OnlineSpec,
        stream: EventStream,
        *,
        progress: Progress,
        retry_for: float,
    ) -> None:
        from loopml.train.online.drift import DriftDetector
        from loopml.train.online.learner import OnlineLearner
        from loopml.train.online.metrics import Prequential

        self.ws, self.spec, self.stream, self.say = ws, spec, stream, progress
        self.retry_for = retry_for
        self.learner: OnlineLearner = OnlineLearner.from_spec(spec)
        self.prequential = Prequential(spec.task, spec.metric_window, spec.positive)
        self.recent: deque[dict[str, Any]] = deque(maxlen=5)  # a registered version's sample
        self.detector = DriftDetector.from_spec(spec.drift)
        self.kinds: dict[str, str] = {}
        self.checkpoints = Checkpoints(ws, spec.model, stream.stream_key)
        self.dead = DeadLetters(ws, spec.model, spec.dead_letter)
        self.seq = 0
        self.total_events = 0  # consumed, over every run, up to the last event handled
        self.total_learned = 0
        self.position: dict[str, Any] | None = None  # after the last event learned
        self.batch: list[tuple[dict[str, Any], Any, dict[str, Any]]] = []
        self.resumed_from: OnlineCheckpoint | None = None
        # this run's counts
        self.events = self.learned = self.predicted_only = self.drifts = 0
        self.dead_letters = self.committed = 0
        self.versions: list[int] = []
        self.since_checkpoint = 0
        self.last_checkpoint_at = time.monotonic()
        self.next_step = spec.metric_window
        self.steps: list[tuple[str, int, float]] = []  # windowed metrics, not yet logged
        self.last_swap: float | None = None  # wall-clock seconds of the last alias move
        #: by field names and value types (None: a shape the fast path leaves to handle())
        self._shapes: dict[tuple[tuple[str, ...], tuple[type, ...]], _Shape | None] = {}
        self._from_proba: bool | None = None  # see fast.label_from_proba

    # resuming
    def resume(self) -> None:
        from loopml.train.online.drift import DriftDetector
        from loopml.train.online.learner import OnlineLearner
        from loopml.train.online.metrics import Prequential

        last = self.checkpoints.latest()
        if last is None:
            self.stream.resume(None)
            return
        loaded = self.checkpoints.load(last)
        extras = loaded.loop
        was = extras.get("fingerprint")
        now = fingerprint(self.spec)
        if was is not None and was != now:
            changed = sorted(k for k in now if now.get(k) != was.get(k))
            raise ConfigError(
                f"online.{changed[0]} of model {self.spec.model!r} changed since checkpoint "
                f"{last.seq} ({was.get(changed[0])!r} then, {now.get(changed[0])!r} now): the "
                "checkpoint's model cannot continue under it",
                where={"file": self.spec.source, "field": f"online.{changed[0]}"},
                hint="Put the old value back to resume, or give the changed learner a new "
                "online.model name (it then starts from the first event)",
            )
        self.learner = OnlineLearner.from_state_bytes(loaded.state)
        if extras.get("prequential") is not None:
            self.prequential = Prequential.from_state(extras["prequential"])
        if self.detector is not None and extras.get("detector") is not None:
            self.detector = DriftDetector.from_state(extras["detector"])
        named = {NUMBER: NUMBER, TEXT: TEXT, IGNORED: IGNORED}  # the constants themselves
        self.kinds = {k: named.get(v, v) for k, v in (extras.get("kinds") or {}).items()}
        self.seq, self.total_events, self.total_learned = last.seq, last.events, last.learned
        self.position = dict(last.position)
        self.next_step = int(extras.get("next_step", self.spec.metric_window))
        self.resumed_from = last
        self.stream.resume(last.position)
        self.say(
            f"resuming from checkpoint {last.seq}: {last.learned} events learned of "
            f"{last.events} read"
        )

    # one event
    def handle(self, event: Event, run_id: str) -> None:
        self.events += 1
        self.total_events += 1
        self.since_checkpoint += 1
        record = event.record
        if event.error is not None or record is None:
            self._dead(event, event.error or "not a JSON object")
            return
        new_kinds, bad = check_kinds(record, self.spec, self.kinds)
        if bad is None:
            bad = check_target(record, self.spec)
        if bad is not None:
            self._dead(event, bad)
            return
        learner = self.learner
        try:
            x = learner.features_of(record)
            y = learner.label_of(record)
        except ConfigError:
            raise
        except InvalidInputError as exc:  # a field of a type no learner takes
            self._dead(event, exc.message)
            return
        if new_kinds:
            self.kinds.update(new_kinds)
        if y is None:  # no target: only predicted
            learner.predict_one(x)
            self.predicted_only += 1
            self._moved(event)
            return
        y_pred, proba = self._predict(x)
        if self.spec.batch == 1:
            try:  # the prediction above came first: test, then train
                learner.learn_one(x, y)
            except ConfigError:
                raise
            except InvalidInputError as exc:  # e.g. a third class for a two-class learner
                self._dead(event, exc.message)
                return
        self._score(y, y_pred, proba, run_id)
        self.recent.append(record)
        if self.spec.batch == 1:
            self._learned(1, event.position)
        else:
            self.batch.append((x, y, event.position))
            if len(self.batch) >= self.spec.batch:
                self.flush()

    # a batch of events
    def handle_batch(self, batch: Batch, run_id: str) -> None:
        """Handle the events of ``batch`` in order, checkpointing when due (after any event,
        as :meth:`handle` then :meth:`due` on each would). Runs of events that the fast
        path (:meth:`_fast`) takes go through it; any other event through :meth:`handle`."""
        records = batch.records
        n, i = len(records), 0
        ready = self._ready()
        while i < n:
            if ready is not None:
                j = self._fast(batch, i, run_id, ready)
                if j > i:
                    i = j
                    if self.due():
                        self.checkpoint(run_id)
                    continue
            record = records[i]
            learned = self.total_learned
            self.handle(batch.event(i), run_id)
            if record is not None and self.total_learned > learned:
                self._remember(record)
            if self.due():
                self.checkpoint(run_id)
            ready = self._ready()
            i += 1

    def _ready(self) -> tuple[Any, ...] | None:
        """What the fast path needs when it may take the next events (None: it may not): a
        River learner learning event by event, from a stream that acknowledges nothing (not
        MQTT), unless River's ``learn_during_predict()`` is on. For a two-class learner that
        knows both its labels, ``(BINARY, negative, positive, the metrics' positive)``; for a
        multiclass one ``(MULTICLASS, whether its label is the likeliest of its
        probabilities)``; for a regressor ``(REGRESSION,)``."""
        learner = self.learner
        if (
            self.spec.batch != 1
            or self.batch
            or self.stream.pending_limit is not None
            or learner.kind != RIVER
            or fast.learns_while_predicting()
        ):
            return None
        if learner.task == "regression":
            return (fast.REGRESSION,)
        if learner.task != "classification":
            return None
        if not learner._binary:
            if self._from_proba is None:
                self._from_proba = fast.label_from_proba(learner.estimator)
            return (fast.MULTICLASS, self._from_proba)
        if len(learner.labels) != 2:
            return None
        neg, pos = learner._pair
        pq = self.prequential
        if neg is UNKNOWN or pos is UNKNOWN or neg not in pq._label_set or pos not in pq._label_set:
            return None
        metric_pos = pq.positive if pq.positive is not None else pq._label_pos
        return None if metric_pos is None else (BINARY, neg, pos, metric_pos)

    def _remember(self, record: dict[str, Any]) -> None:
        """Note the :class:`_Shape` of ``record``, an event :meth:`handle` learned."""
        shapes = self._shapes
        key = (tuple(record), tuple(map(type, record.values())))
        if key in shapes or len(shapes) >= MAX_SHAPES:
            return
        shapes[key] = None  # this shape is not for the fast path, unless found below
        names = key[0]
        spec, learner = self.spec, self.learner
        target = spec.target
        y_type = record.get(target).__class__
        if learner.task == "regression":
            if y_type not in (float, int):  # (a float's value is checked by the fast path)
                return
        elif y_type not in (str, int, bool):  # a float: its value is checked
            return
        new, bad = check_kinds(record, spec, self.kinds)
        if new or bad:
            return
        wanted, skip = learner.features, learner._skip
        keep_text = learner.strings == "keep"
        drop, convert, floats = [], [], []
        size, numeric = 0, True
        for name, value in record.items():
            feature = (name in wanted) if wanted is not None else (name not in skip)
            if name == target:
                if feature:
                    return
                continue
            t = value.__class__
            if not feature or value is None or (t is str and not keep_text):
                drop.append(name)
                continue
            if t is float:
                floats.append(name)
            elif t is int or t is bool:
                convert.append(name)
            elif t is str:
                numeric = False
            else:
                return
            size += 1
        shapes[key] = _Shape(
            drop=tuple(drop),
            convert=tuple(convert),
            floats=tuple(floats),
            numeric=numeric,
            size=size,
            covered=learner.fields.keys() >= {*names} - {target, *drop},
        )

    def _fast(self, batch: Batch, start: int, run_id: str, ready: tuple[Any, ...]) -> int:
        """Test, then train, the events of ``batch`` from ``start`` whose shape was seen
        (:meth:`_remember`), as :meth:`handle` does each — the same model, metrics and
        counts — in one loop of local variables; stops before an event it does not take,
        at a window's end and when a checkpoint is due. The index after the last taken.
        ``ready`` (:meth:`_ready`) says which loop: :meth:`_fast_binary`, or those of
        :mod:`loopml.train.online.fast`."""
        mode = ready[0]
        if mode == BINARY:
            return self._fast_binary(batch, start, run_id, ready[1:])
        if mode == fast.MULTICLASS:
            return fast.multiclass(self, batch, start, run_id, ready[1])
        return fast.regression(self, batch, start, run_id)

    def _fast_binary(self, batch: Batch, start: int, run_id: str, ready: tuple[Any, ...]) -> int:
        """:meth:`_fast` for a two-class learner (its labels learned as booleans)."""
        neg, pos, metric_pos = ready
        records, finite = batch.records, batch.finite
        limit = fast.run_end(self, batch, start)
        learner, pq, shapes = self.learner, self.prequential, self._shapes
        fields, target = learner.fields, self.spec.target
        steps, final = fast.unrolled(learner.estimator)
        proba_one, learn_one = final.predict_proba_one, final.learn_one
        observe = learner.observe
        w_correct, w_loss, w_scores = pq.w_correct.append, pq.w_loss.append, pq.w_scores.append
        counts = pq.bins.get(metric_pos)
        if counts is None:
            counts = pq.bins[metric_pos] = ([0] * AUC_BINS, [0] * AUC_BINS)
        pos_counts, neg_counts = counts
        detect = None if self.detector is None else self.detector.update
        log, low, high = math.log, EPS, 1.0 - EPS
        top = AUC_BINS - 1
        n, correct, n_proba, loss_sum = pq.n, pq.correct, pq.n_proba, pq.loss_sum
        done = start  # events up to here are counted in the loop's attributes
        last_names: tuple[str, ...] | None = None
        last_types: tuple[type, ...] | None = None
        shape: Any = fast.uniform_run(records, start, limit, shapes)
        checked = limit if shape is not None else start  # records before it are of ``shape``
        plain = shape is not None and finite and not (shape.drop or shape.convert)
        i = start
        while i < limit:
            record: Any = records[i]  # (a dict from here on: checked or uniform_run)
            if i >= checked:
                if record is None:
                    break
                names, types = tuple(record), tuple(map(type, record.values()))
                if names != last_names or types != last_types:  # (most are as the one before)
                    shape = shapes.get((names, types))
                    if shape is None:
                        break
                    last_names, last_types = names, types
                    plain = finite and not (shape.drop or shape.convert)  # the record less y
            y = record[target]
            if y != pos and y != neg:  # a third label: refused by handle()
                break
            if plain:  # features(), the common case inline
                x = record.copy()
                del x[target]
            else:
                got = fast.features(record, target, shape, finite)
                if got is None:
                    break
                x = got
            # test (the pipeline's steps, then its last: fast.unrolled)
            xt = x
            for _, transform in steps:
                xt = transform(xt)
            p = float(proba_one(xt).get(True, 0.0))
            q = 1.0 - p
            if q > p:
                y_pred = neg
            elif p > q:
                y_pred = pos
            else:  # a tie (or NaN): as _predict
                proba = {neg: q, pos: p}
                y_pred = max(proba, key=lambda k: (proba[k], label_key(k)))
            # then train (OnlineLearner.learn_one)
            sampled = learner.learned % OBSERVE_EVERY == 0
            if sampled or not shape.covered or len(fields) != shape.size:
                observe(x)
                shape.covered = True
            xt = x
            for learn_step, transform in steps:
                learn_step(xt)
                xt = transform(xt)
            learn_one(xt, y == pos)
            learner.learned += 1
            # score (Prequential.update)
            n += 1
            right = y_pred == y
            correct += right
            w_correct(right)
            pt = q if y == neg else p  # clipped as min(max(pt, low), high), NaN kept
            loss = -log(low if pt < low else (high if pt > high else pt))
            n_proba += 1
            loss_sum += loss
            w_loss(loss)
            score = p if metric_pos == pos else (q if metric_pos == neg else 0.0)
            if score == score:
                w_scores((y, score))
                b = int(score * AUC_BINS)
                b = 0 if b < 0 else (top if b > top else b)
                (pos_counts if y == metric_pos else neg_counts)[b] += 1
            else:  # NaN: not ranked (Prequential.update)
                w_scores((y, None))
            i += 1
            if detect is not None and detect(0.0 if right else 1.0):
                pq.n, pq.correct, pq.n_proba, pq.loss_sum = n, correct, n_proba, loss_sum
                self._counted(batch, done, i)
                done = i
                self._drift(0.0 if right else 1.0, run_id)
        pq.n, pq.correct, pq.n_proba, pq.loss_sum = n, correct, n_proba, loss_sum
        self._counted(batch, done, i)
        return i

    def _counted(self, batch: Batch, start: int, end: int) -> None:
        """Count the events ``start`` to ``end`` of ``batch``, each learned by :meth:`_fast`."""
        k = end - start
        if not k:
            return
        self.events += k
        self.total_events += k
        self.since_checkpoint += k
        self.recent.extend(batch.records[max(start, end - 5) : end])  # type: ignore[arg-type]
        self._learned(k, batch.position(end - 1))

    def _predict(self, x: dict[str, Any]) -> tuple[Any, dict[Any, float] | None]:
        """The prediction and (classification) the class probabilities of ``x``, computing
        them once: a two-class River learner's label is the likelier of its probabilities,
        ties to the greater label, as its ``predict_one`` answers."""
        learner = self.learner
        if self.spec.task != "classification":
            return learner.predict_one(x), None
        proba = learner.predict_proba_one(x)
        if not self._binary:
            return learner.predict_one(x), proba
        if not proba:
            return None, proba
        if len(proba) == 2:  # the max below without its keys, unless a tie (or NaN)
            (a, pa), (b, pb) = proba.items()
            if pa > pb:
                return a, proba
            if pb > pa:
                return b, proba
        return max(proba, key=lambda k: (proba[k], label_key(k))), proba

    @property
    def _binary(self) -> bool:
        return bool(getattr(self.learner, "_binary", False))

    def _score(self, y: Any, y_pred: Any, proba: Any, run_id: str) -> None:
        error = self.prequential.update(y, y_pred, proba)
        if self.detector is not None and self.detector.update(error):
            self._drift(error, run_id)

    def _moved(self, event: Event) -> None:
        """An event that leaves nothing pending: the position may move past it."""
        if not self.batch:
            self.position = event.position

    def _dead(self, event: Event, reason: str) -> None:
        self.dead.add(self.stream.stream_key, event, reason)
        self.dead_letters += 1
        self._moved(event)

    def flush(self) -> None:
        if not self.batch:
            return
        xs, ys = [b[0] for b in self.batch], [b[1] for b in self.batch]
        position = self.batch[-1][2]
        self.learner.learn_many(xs, ys)
        self.batch = []
        self._learned(len(xs), position)

    def _learned(self, n: int, position: dict[str, Any]) -> None:
        self.learned += n
        self.total_learned += n
        self.position = position
        if self.total_learned >= self.next_step:  # a window of learned events is complete
            window = self.prequential.snapshot()["window"]
            for key, value in sorted(window.items()):
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if number and math.isfinite(value):
                    self.steps.append((f"online.{key}", self.total_learned, float(value)))
            w = self.spec.metric_window
            self.next_step = (self.total_learned // w + 1) * w

    def _drift(self, error: float, run_id: str) -> None:
        self.drifts += 1
        name = str(self.spec.drift.get("detector") if self.spec.drift else "drift")
        snapshot = self.prequential.snapshot()
        stream_id = hashlib.sha256(self.stream.stream_key.encode()).hexdigest()[:12]
        event = MonitorEvent(
            id=None,
            at=utcnow(),
            model=self.spec.model,
            kind="drift",
            reason=f"online learner: {name} found a change in the error stream at event "
            f"{self.total_events} of {self.stream.describe()}",
            evidence={
                "source": "online",
                "detector": dict(self.spec.drift or {}),
                "event": self.total_events,
                "learned": self.total_learned,
                "error": error,
                "metrics": snapshot,
                "stream": self.stream.stream_key,
                "run_id": run_id,
            },
            dedupe=f"online-drift:{self.spec.model}:{stream_id}:{self.total_events}"[:256],
        )
        self.ws.metadata.add_monitor_event(event)
        self.say(event.reason)

    # checkpoints
    def due(self) -> bool:
        if self.batch or self.since_checkpoint == 0:
            return False
        if self.since_checkpoint >= self.spec.checkpoint_every:
            return True
        limit = self.stream.pending_limit
        return time.monotonic() - self.last_checkpoint_at >= self.spec.checkpoint_seconds or (
            limit is not None and self.stream.pending() >= limit
        )

    def checkpoint(self, run_id: str) -> OnlineCheckpoint | None:
        if self.batch or self.position is None or self.since_checkpoint == 0:
            return None
        metrics = self.prequential.snapshot()
        loop = {
            "fingerprint": fingerprint(self.spec),
            "kinds": self.kinds,
            "next_step": self.next_step,
        }
        encoded = {
            "prequential": self.prequential.state(framed=True),  # for orjson: pack()
            "detector": None if self.detector is None else self.detector.state(),
        }
        self.dead.sync()  # letters of the events the checkpoint holds are durable first
        cp = self.checkpoints.commit(
            seq=self.seq + 1,
            state=self.learner.state_bytes(),
            loop=loop,
            encoded=encoded,
            position=self.position,
            events=self.total_events,
            learned=self.total_learned,
            run_id=run_id,
            metrics=metrics,
            steps=self.steps,  # the windows completed since the last one, in its transaction
        )
        self.steps = []
        self.seq = cp.seq
        self.committed += 1
        self.since_checkpoint = 0
        self.last_checkpoint_at = time.monotonic()
        self.stream.committed(cp.position)
        self._maybe_register(cp, run_id, metrics)
        return cp

    def _maybe_register(self, cp: OnlineCheckpoint, run_id: str, metrics: dict[str, Any]) -> None:
        alias = self.spec.alias
        if alias is None or cp.learned == 0:
            return
        now = time.time()
        if self.last_swap is None:
            events = self.ws.metadata.list_alias_events(self.spec.model, alias, limit=1)
            self.last_swap = events[0].at.timestamp() if events else 0.0
        if now - self.last_swap < self.ws.settings.online_swap_seconds:
            return
        from loopml.registry.models import register_model, set_alias
        from loopml.train.online.learner import bundle_of

        bundle = bundle_of(self.learner, self.spec, list(self.recent))
        mv = register_model(
            self.ws,
            self.spec.model,
            bundle,
            run_id=run_id,
            metrics={
                "online": {
                    "checkpoint": cp.seq,
                    "stream": cp.stream,
                    "events": cp.events,
                    "learned": cp.learned,
                    "checksum": self.learner.checksum(),
                },
                "prequential": metrics,
            },
        )
        set_alias(
            self.ws,
            mv.name,
            alias,
            mv.version,
            reason=f"online checkpoint {cp.seq} ({cp.learned} events learned)",
        )
        self.last_swap = now
        self.versions.append(mv.version)
        self.say(f"registered {mv.name}@{mv.version} (checkpoint {cp.seq}); {alias} -> it")

    # reading, with retries
    def read(self, most: int) -> Batch:
        delay, started = 0.1, None
        while True:
            try:
                return self.stream.read_batch(most, POLL_S)
            except StoreError as exc:
                if exc.code not in RETRYABLE:
                    raise
                now = time.monotonic()
                started = now if started is None else started
                if now - started >= self.retry_for:
                    raise StoreError(
                        f"{exc.message} (retried for {self.retry_for:g} s)",
                        where=exc.where,
                        hint=exc.hint,
                        code=exc.code,
                    ) from exc
                self.say(f"{exc.message}; retrying in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)


def learn(
    ws: Workspace,
    spec: OnlineSpec,
    *,
    max_events: int | None = None,
    idle_timeout: float | None = None,
    retry_for: float = 30.0,
    progress: Progress | None = None,
) -> LearnResult:
    """Learn ``spec``'s model from its stream, test-then-train, until ``max_events`` events
    were consumed, the stream stayed idle ``idle_timeout`` seconds, or Ctrl-C (each ends
    with a checkpoint). Resumes from the last checkpoint of the model on that stream.

    A stream that is missing or unreachable is retried with a growing pause (0.1 s up to
    5 s) for ``retry_for`` seconds, then a StoreError says which and why. ConfigError for a
    learner that cannot learn online or a project changed under an existing checkpoint.
    """
    say = progress or (lambda _msg: None)
    for value, name in ((max_events, "max_events"), (idle_timeout, "idle_timeout")):
        if value is not None and (isinstance(value, bool) or value <= 0):
            raise ConfigError(
                f"{name} must be positive, got {value!r}",
                where={"option": f"--{name.replace('_', '-')}"},
                hint=f"Leave --{name.replace('_', '-')} out to learn until stopped",
            )
    stream = open_stream(spec.stream, ws, target=spec.target)
    started = time.perf_counter()
    loop = _Loop(ws, spec, stream, progress=say, retry_for=retry_for)
    try:
        loop.resume()
        # the stream answers (or is given up on) before a run is recorded
        first = loop.read(READ_MOST if max_events is None else min(READ_MOST, max_events))
        run = Run(
            id=new_id(),
            name=spec.model,
            status="running",
            started_at=utcnow(),
            params={
                "online": spec.to_dict(),
                "stream": stream.stream_key,
                "resumed_from": None if loop.resumed_from is None else loop.resumed_from.seq,
            },
            owner=process_owner(),
            parent_id=None if loop.resumed_from is None else loop.resumed_from.run_id,
            tags={"mode": "online"},
        )
        ws.metadata.add_run(run)
        say(f"run {run.id[:8]}: learning {spec.model} from {stream.describe()}")
        try:
            with _frozen_heap():
                stopped = _consume(loop, run.id, max_events, idle_timeout, first)
            loop.checkpoint(run.id)
        except BaseException as exc:
            ws.metadata.update_run(
                replace(
                    run,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    duration_s=time.perf_counter() - started,
                )
            )
            raise
        metrics = loop.prequential.snapshot()
        run = replace(
            run,
            status="aborted" if stopped == "interrupted" else "succeeded",
            metrics={"online": metrics, "events": loop.events, "learned": loop.learned},
            duration_s=time.perf_counter() - started,
        )
        ws.metadata.update_run(run)
    finally:
        loop.dead.close()
        stream.close()
    return LearnResult(
        run=run,
        stream=stream.stream_key,
        events=loop.events,
        learned=loop.learned,
        predicted_only=loop.predicted_only,
        dead_letters=loop.dead_letters,
        checkpoints=loop.committed,
        versions=loop.versions,
        drifts=loop.drifts,
        resumed_from=None if loop.resumed_from is None else loop.resumed_from.seq,
        total_events=loop.total_events,
        metrics=metrics,
        checksum=loop.learner.checksum(),
        seconds=time.perf_counter() - started,
        checkpoint_ms=list(loop.checkpoints.timings_ms),
        stopped=stopped,
    )


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the objects alive before the loop (modules, the learner, the caller's data) out
    of the cyclic garbage collector's scans while it runs (``gc.freeze``): each event makes
    a few dicts, and the collections that follow scanned the whole heap, a fifth of the
    loop's time. Left alone when someone else froze the heap already."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _consume(
    loop: _Loop,
    run_id: str,
    max_events: int | None,
    idle_timeout: float | None,
    first: Batch,
) -> str:
    """Handle ``first``, then read and handle events until the run ends; why it ended."""
    idle_since = time.monotonic()
    events: Batch | None = first
    try:
        while True:
            if events is None:
                most = READ_MOST if max_events is None else min(READ_MOST, max_events - loop.events)
                events = loop.read(most)
            if events:
                idle_since = time.monotonic()
                loop.handle_batch(events, run_id)
            if max_events is not None and loop.events >= max_events:
                return "max_events"
            if not events:
                if loop.due():  # by time, or what MQTT holds unacknowledged
                    loop.checkpoint(run_id)
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return "idle"
            events = None
    except KeyboardInterrupt:
        return "interrupted"


__all__ = ["LearnResult", "check_kinds", "check_target", "fingerprint", "learn"]
