"""The learner's fast paths for multiclass classification and regression (River learners,
event by event): runs of events of a shape already checked, tested, learned and scored in
one loop of local variables, as :meth:`loopml.train.online.learn._Loop.handle` does each
one — the same model, metrics, counts, drift events and checkpoints.

Each function takes the loop's state (``loop``, a ``_Loop``), the batch and where to start,
and returns the index after the last event it took; it stops before an event it does not
take (a shape not seen, a malformed one, a label not known yet, a value that is not
finite), at the end of a metric window and when a checkpoint is due, leaving that event to
the careful path. The two-class path is ``_Loop._fast_binary`` (its labels are learned as
booleans).
"""

from __future__ import annotations

import math
from itertools import chain
from typing import TYPE_CHECKING, Any

from loopml.registry.flavors.river import OBSERVE_EVERY
from loopml.train.online.metrics import AUC_BINS, EPS

if TYPE_CHECKING:
    from loopml.train.online.events import Batch

MULTICLASS, REGRESSION = "multiclass", "regression"


def label_from_proba(estimator: Any) -> bool:
    """Whether ``estimator.predict_one(x)`` is the likeliest class of
    ``estimator.predict_proba_one(x)`` (River's default, first of ties in the dict's order):
    then the fast path computes the probabilities once, as River's own ``predict_one``
    would. False for a learner (or pipeline) that answers ``predict_one`` its own way."""
    from river import base, compose

    final = estimator
    if isinstance(estimator, compose.Pipeline):
        if (
            type(estimator).predict_one is not compose.Pipeline.predict_one
            or type(estimator).predict_proba_one is not compose.Pipeline.predict_proba_one
        ):
            return False
        final = list(estimator.steps.values())[-1]
    return type(final).predict_one is base.Classifier.predict_one


def learns_while_predicting() -> bool:
    """Whether River's ``compose.learn_during_predict()`` is on: a pipeline's unsupervised
    steps then learn on each ``predict_*_one`` call, so the careful path (which asks for
    the probabilities, then the label) and a fast one (which asks once) would learn
    differently; the fast paths stay off meanwhile."""
    from river import compose

    return bool(getattr(compose.Pipeline, "_LEARN_UNSUPERVISED_DURING_PREDICT", False))


def unrolled(estimator: Any) -> tuple[tuple[tuple[Any, Any], ...], Any]:
    """A River pipeline as its steps: ``(((learn_one, transform_one) of each step before
    the last, ...), the last step)``, for the fast paths to call as ``Pipeline`` does —
    ``predict_*_one``: each ``transform_one`` then the last step's; ``learn_one``: each step's
    ``learn_one`` then ``transform_one``, then the last step's ``learn_one`` — without the
    pipeline's own work per call (a tenth of a linear model's time). ``((), estimator)``
    (the estimator called as it is) for a learner alone, a pipeline subclass, one with a
    union, an anomaly filter or a supervised transformer, and while River's
    ``compose.learn_during_predict()`` is on."""
    from river import base, compose

    if (
        type(estimator) is not compose.Pipeline
        or getattr(estimator, "_LEARN_UNSUPERVISED_DURING_PREDICT", True)
        or not estimator.steps
    ):
        return (), estimator
    *head, last = estimator.steps.values()
    if isinstance(last, base.Transformer | base.AnomalyFilter) or not getattr(
        last, "_supervised", False
    ):
        return (), estimator
    steps = []
    for step in head:
        if (
            not isinstance(step, base.Transformer)
            or isinstance(step, compose.TransformerUnion | base.AnomalyFilter)
            or step._supervised
        ):
            return (), estimator
        steps.append((step.learn_one, step.transform_one))
    return tuple(steps), last


def features(
    record: dict[str, Any], target: str, shape: Any, finite: bool
) -> dict[str, Any] | None:
    """The learner's input from ``record`` of a checked ``shape``: the target and the
    shape's dropped fields removed, its integer fields as floats; None when a value is not
    finite (NaN, inf, or a sum too big: :meth:`_Loop.handle` says which). ``finite`` is the
    batch's word that every value is."""
    x = record.copy()
    del x[target]
    for name in shape.drop:
        del x[name]
    for name in shape.convert:
        x[name] = float(x[name])
    if finite:
        return x
    if shape.numeric:
        return x if math.isfinite(sum(x.values())) else None
    return x if all(math.isfinite(x[name]) for name in shape.floats) else None


def uniform_run(records: list[Any], start: int, limit: int, shapes: dict[Any, Any]) -> Any:
    """The shape of every record from ``start`` to ``limit`` when they all have the first
    one's field names (in order) and value types, and that shape is known (in ``shapes``);
    else None (then each record is looked at on its own). Checked as two C loops over the
    run's names and types, each end to end: the keys of a record are distinct, so a run
    whose names run on as the first record's, repeated, is one of records of those names
    (a longer record would hold a name twice)."""
    first = records[start] if start < limit else None
    if first is None:
        return None
    names, types = tuple(first), tuple(map(type, first.values()))
    shape = shapes.get((names, types))
    if shape is None:
        return None
    run = records[start:limit]
    k = len(run)
    try:
        same = (
            list(chain.from_iterable(run)) == list(names) * k
            and list(map(type, chain.from_iterable(map(dict.values, run)))) == list(types) * k
        )
    except TypeError:  # a malformed event (None) in the run
        return None
    return shape if same else None


def run_end(loop: Any, batch: Batch, start: int) -> int:
    """Where a run from ``start`` must stop: the batch's end, a due checkpoint, a window."""
    return min(
        len(batch.records),
        start + max(1, loop.spec.checkpoint_every - loop.since_checkpoint),
        start + max(1, loop.next_step - loop.total_learned),
    )


def _inputs(
    loop: Any, batch: Batch, start: int, limit: int, regression: bool
) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """The learner's inputs, labels and shapes of the events from ``start`` (up to
    ``limit``) that the fast path takes, as ``features_of`` and ``label_of`` give them; stops
    at the first one it does not."""
    records, finite = batch.records, batch.finite
    shapes, target = loop._shapes, loop.spec.target
    isfinite = math.isfinite
    xs: list[dict[str, Any]] = []
    ys: list[Any] = []
    kept: list[Any] = []
    last_names: tuple[str, ...] | None = None
    last_types: tuple[type, ...] | None = None
    shape: Any = uniform_run(records, start, limit, shapes)
    checked = limit if shape is not None else start  # records before it are of ``shape``
    plain = shape is not None and finite and not (shape.drop or shape.convert)
    for i in range(start, limit):
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
        if regression:
            if y.__class__ is float:
                if not (finite or isfinite(y)):
                    break
            else:  # an integer (the shape holds no other type)
                y = float(y)
        if plain:  # features(), the common case inline
            x = record.copy()
            del x[target]
        else:
            got = features(record, target, shape, finite)
            if got is None:
                break
            x = got
        xs.append(x)
        ys.append(y)
        kept.append(shape)
    return xs, ys, kept


def multiclass(loop: Any, batch: Batch, start: int, run_id: str, from_proba: bool) -> int:
    """The fast path of a multiclass River learner (``from_proba``: its label is the
    likeliest of its probabilities, :func:`label_from_proba`). Takes events whose label
    both the learner and the metrics know already (a new one goes to the careful path)."""
    limit = run_end(loop, batch, start)
    xs, ys, kept = _inputs(loop, batch, start, limit, regression=False)
    if not xs:
        return start
    learner, pq = loop.learner, loop.prequential
    fields, observe = learner.fields, learner.observe
    known = set(learner.labels) & pq._label_set
    steps, final = unrolled(learner.estimator)
    proba_one, predict_one, learn_one = final.predict_proba_one, final.predict_one, final.learn_one
    positive_of, bins = pq._positive, pq.bins
    w_correct, w_loss, w_scores = pq.w_correct.append, pq.w_loss.append, pq.w_scores.append
    detect = None if loop.detector is None else loop.detector.update
    log, low, high, top = math.log, EPS, 1.0 - EPS, AUC_BINS - 1
    n, correct, n_proba, loss_sum = pq.n, pq.correct, pq.n_proba, pq.loss_sum
    done = i = start
    for x, y, shape in zip(xs, ys, kept, strict=True):
        if y not in known:  # a label not learned yet: the careful path adds it
            break
        # test (OnlineModel.predict_proba_one, then predict_one)
        xt = x
        for _, transform in steps:
            xt = transform(xt)
        raw = proba_one(xt)
        y_pred = predict_one(xt) if not from_proba else (max(raw, key=raw.get) if raw else None)
        proba = dict(raw)
        # then train (OnlineLearner.learn_one; ``observe(x)`` when it
        # would record anything: OnlineModel.observe)
        if learner.learned % OBSERVE_EVERY == 0 or not shape.covered or len(fields) != shape.size:
            observe(x)
            shape.covered = True
        xt = x
        for learn_step, transform in steps:
            learn_step(xt)
            xt = transform(xt)
        learn_one(xt, y)
        learner.learned += 1
        # score (Prequential.update)
        n += 1
        right = y_pred is not None and y_pred == y
        correct += right
        w_correct(right)
        if proba:
            pt = float(proba.get(y, 0.0))  # clipped as min(max(pt, low), high), NaN kept
            loss = -log(low if pt < low else (high if pt > high else pt))
            n_proba += 1
            loss_sum += loss
            w_loss(loss)
            pos = positive_of(proba)
            score = None if pos is None else float(proba.get(pos, 0.0))
            if score != score:  # NaN: not ranked (Prequential.update)
                score = None
            w_scores((y, score))
            if score is not None and pos is not None:
                b = int(score * AUC_BINS)
                b = 0 if b < 0 else (top if b > top else b)
                counts = bins.get(pos)
                if counts is None:
                    counts = bins[pos] = ([0] * AUC_BINS, [0] * AUC_BINS)
                counts[0 if y == pos else 1][b] += 1
        i += 1
        if detect is not None and detect(0.0 if right else 1.0):
            pq.n, pq.correct, pq.n_proba, pq.loss_sum = n, correct, n_proba, loss_sum
            loop._counted(batch, done, i)
            done = i
            loop._drift(0.0 if right else 1.0, run_id)
    pq.n, pq.correct, pq.n_proba, pq.loss_sum = n, correct, n_proba, loss_sum
    loop._counted(batch, done, i)
    return i


def regression(loop: Any, batch: Batch, start: int, run_id: str) -> int:
    """The fast path of a River regressor."""
    limit = run_end(loop, batch, start)
    xs, ys, kept = _inputs(loop, batch, start, limit, regression=True)
    if not xs:
        return start
    learner, pq = loop.learner, loop.prequential
    fields, observe = learner.fields, learner.observe
    steps, final = unrolled(learner.estimator)
    predict_one, learn_one = final.predict_one, final.learn_one
    w_abs = pq.w_abs.append
    detect = None if loop.detector is None else loop.detector.update
    n, abs_sum, sq_sum = pq.n, pq.abs_sum, pq.sq_sum
    done = i = start
    for x, y, shape in zip(xs, ys, kept, strict=True):
        xt = x  # test
        for _, transform in steps:
            xt = transform(xt)
        y_pred = predict_one(xt)
        # then train (OnlineLearner.learn_one; ``observe(x)`` when it
        # would record anything: OnlineModel.observe)
        if learner.learned % OBSERVE_EVERY == 0 or not shape.covered or len(fields) != shape.size:
            observe(x)
            shape.covered = True
        xt = x
        for learn_step, transform in steps:
            learn_step(xt)
            xt = transform(xt)
        learn_one(xt, y)
        learner.learned += 1
        # score (Prequential.update)
        n += 1
        err = abs(y - float(y_pred if y_pred is not None else 0.0))
        abs_sum += err
        sq_sum += err * err
        w_abs(err)
        i += 1
        if detect is not None and detect(err):
            pq.n, pq.abs_sum, pq.sq_sum = n, abs_sum, sq_sum
            loop._counted(batch, done, i)
            done = i
            loop._drift(err, run_id)
    pq.n, pq.abs_sum, pq.sq_sum = n, abs_sum, sq_sum
    loop._counted(batch, done, i)
    return i


__all__ = [
    "MULTICLASS",
    "REGRESSION",
    "label_from_proba",
    "learns_while_predicting",
    "multiclass",
    "regression",
    "uniform_run",
    "unrolled",
]
