"""Pipelines: running a project's steps in order (above the stages they run).

The project file's types live in :mod:`loopml.project`; they are re-exported here for
callers of earlier versions.
"""

from loopml.project import PROJECT_FILE, EvaluationSpec, ModelSpec, ProjectConfig

__all__ = ["PROJECT_FILE", "EvaluationSpec", "ModelSpec", "ProjectConfig"]
