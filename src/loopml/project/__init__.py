"""The project file, ``loopml.yaml``: its types and their parsing.

This package sits below every stage that reads a project file (training, evaluation, the
feature pipeline, and later pipelines and policies), so none of them imports another to learn
what the file says.
"""

from loopml.project.config import PROJECT_FILE, TASKS, EvaluationSpec, ModelSpec, ProjectConfig
from loopml.project.features import FeatureSpec
from loopml.project.gate import Condition, Gate

__all__ = [
    "PROJECT_FILE",
    "TASKS",
    "Condition",
    "EvaluationSpec",
    "FeatureSpec",
    "Gate",
    "ModelSpec",
    "ProjectConfig",
]
