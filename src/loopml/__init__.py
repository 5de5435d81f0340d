"""loopml: the whole machine-learning loop in one tool.

>>> import loopml
>>> ws = loopml.init(".loopml")                                # workspace + stores
>>> loopml.ingest(ws, "data.csv", "cancer")                     # versioned dataset
>>> res = loopml.train(ws, loopml.ProjectConfig.from_file("loopml.yaml"))
>>> model = loopml.load_model(ws, "cancer")                     # its champion
>>> model.predict(frame)
>>> loopml.check_drift(ws, "cancer")                            # against the training data
"""

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
from loopml.evaluate import Gate, compute_metrics
from loopml.features import FeatureSpec
from loopml.monitor import DriftCheck, check_drift, compute_drift
from loopml.pipeline import ProjectConfig
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
from loopml.train import TrainResult, fit_bundle, train
from loopml.workspace import Workspace, init, open_workspace

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConflictError",
    "DriftCheck",
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
    "Signature",
    "StoreError",
    "TrainResult",
    "Workspace",
    "__version__",
    "check_drift",
    "compute_drift",
    "compute_metrics",
    "create_app",
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
    "set_alias",
    "start_background_server",
    "train",
]
