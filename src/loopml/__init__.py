"""loopml: the whole machine-learning loop in one tool.

>>> import loopml
>>> ws = loopml.init(".loopml")                                # workspace + stores
>>> loopml.ingest(ws, "data.csv", "cancer")                     # versioned dataset
>>> res = loopml.train(ws, loopml.ProjectConfig.from_file("loopml.yaml"))
>>> model = loopml.load_model(ws, "cancer")                     # its champion
>>> model.predict(frame)
>>> loopml.check_drift(ws, "cancer")                            # against the training data
"""

from typing import TYPE_CHECKING

from loopml.utils import lazy_exports

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from loopml.data import get_dataset, ingest, list_datasets, load_dataset
    from loopml.errors import (
        ConfigError,
        ConflictError,
        GateFailedError,
        IntegrityError,
        InvalidInputError,
        LoopmlError,
        NotFoundError,
        StoreError,
    )
    from loopml.evaluate import compute_metrics
    from loopml.lineage import trace_prediction
    from loopml.monitor import DriftCheck, check_drift, compute_drift
    from loopml.project import FeatureSpec, Gate, ProjectConfig
    from loopml.quickstart import run_quickstart
    from loopml.registry import (
        LoadedModel,
        ModelBundle,
        Signature,
        list_models,
        load_model,
        register_model,
        resolve_version,
        set_alias,
    )
    from loopml.serve import create_app, run_server, start_background_server
    from loopml.serve.scoring import predict_file
    from loopml.train import TrainResult, fit_bundle
    from loopml.train.evaluation import Evaluation, evaluate_model
    from loopml.train.search import SearchResult, search
    from loopml.workspace import Workspace, init, open_workspace

__version__ = "0.1.0"

# Names load on first use, so `import loopml` and `loopml --help` stay quick.
_LAZY: dict[str, str] = {
    "ConfigError": "loopml.errors",
    "ConflictError": "loopml.errors",
    "DriftCheck": "loopml.monitor",
    "Evaluation": "loopml.train.evaluation",
    "FeatureSpec": "loopml.project",
    "Gate": "loopml.project",
    "GateFailedError": "loopml.errors",
    "IntegrityError": "loopml.errors",
    "InvalidInputError": "loopml.errors",
    "LoadedModel": "loopml.registry",
    "LoopmlError": "loopml.errors",
    "ModelBundle": "loopml.registry",
    "NotFoundError": "loopml.errors",
    "ProjectConfig": "loopml.project",
    "SearchResult": "loopml.train.search",
    "Signature": "loopml.registry",
    "StoreError": "loopml.errors",
    "TrainResult": "loopml.train",
    "Workspace": "loopml.workspace",
    "check_drift": "loopml.monitor",
    "compute_drift": "loopml.monitor",
    "compute_metrics": "loopml.evaluate",
    "create_app": "loopml.serve",
    "evaluate_model": "loopml.train.evaluation",
    "fit_bundle": "loopml.train",
    "get_dataset": "loopml.data",
    "ingest": "loopml.data",
    "init": "loopml.workspace",
    "list_datasets": "loopml.data",
    "list_models": "loopml.registry",
    "load_dataset": "loopml.data",
    "load_model": "loopml.registry",
    "open_workspace": "loopml.workspace",
    "predict_file": "loopml.serve.scoring",
    "register_model": "loopml.registry",
    "resolve_version": "loopml.registry",
    "run_quickstart": "loopml.quickstart",
    "run_server": "loopml.serve",
    "search": "loopml.train.search",
    "set_alias": "loopml.registry",
    "trace_prediction": "loopml.lineage",
    "start_background_server": "loopml.serve",
}


# `loopml.train` is both a stage package and the function users call. The (light) package is
# imported here, first, so that binding its module object to the name happens now; the
# function defined below then holds the name for good.
import loopml.feedback as _feedback  # noqa: E402
import loopml.train as _train_stage  # noqa: E402


def train(
    ws: "Workspace",
    config: "ProjectConfig",
    *,
    progress: "Callable[[str], None] | None" = None,
    from_version: str | None = None,
    resume: str | None = None,
) -> "TrainResult":
    """Train the model ``config`` describes; register and promote it if it passes its gate.

    ``from_version="NAME@VERSION"`` continues that registered version on the project's
    dataset instead of training from scratch; ``resume=RUN_ID`` resumes a failed or killed
    run of a network from its last checkpoint. See :func:`loopml.train.trainer.train`.
    """
    return _train_stage.train(
        ws, config, progress=progress, from_version=from_version, resume=resume
    )


def feedback(
    ws: "Workspace",
    items: "Mapping[str, Any] | Iterable[Mapping[str, Any]]",
    *,
    source: str = "api",
    check_known: bool = True,
) -> "_feedback.FeedbackResult":
    """Store outcomes of served predictions: ``{"prediction_id", "label"}`` and/or
    ``"reward"``, one or a list; repeats are skipped. See :func:`loopml.feedback.record_feedback`.
    """
    return _feedback.record_feedback(ws, items, source=source, check_known=check_known)


__getattr__ = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ConfigError",
    "ConflictError",
    "DriftCheck",
    "Evaluation",
    "FeatureSpec",
    "Gate",
    "GateFailedError",
    "IntegrityError",
    "InvalidInputError",
    "LoadedModel",
    "LoopmlError",
    "ModelBundle",
    "NotFoundError",
    "ProjectConfig",
    "SearchResult",
    "Signature",
    "StoreError",
    "TrainResult",
    "Workspace",
    "__version__",
    "check_drift",
    "compute_drift",
    "compute_metrics",
    "create_app",
    "evaluate_model",
    "feedback",
    "fit_bundle",
    "get_dataset",
    "ingest",
    "init",
    "list_datasets",
    "list_models",
    "load_dataset",
    "load_model",
    "open_workspace",
    "predict_file",
    "register_model",
    "resolve_version",
    "run_quickstart",
    "run_server",
    "search",
    "set_alias",
    "start_background_server",
    "trace_prediction",
    "train",
]
