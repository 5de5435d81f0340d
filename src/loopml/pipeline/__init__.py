"""Project files and running their steps."""

from loopml.pipeline.project import PROJECT_FILE, EvaluationSpec, ModelSpec, ProjectConfig

__all__ = ["PROJECT_FILE", "EvaluationSpec", "ModelSpec", "ProjectConfig"]
