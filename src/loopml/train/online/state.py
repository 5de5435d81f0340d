"""The online state format, and a checkpoint's document: learner, metrics and detector.

An online learner is saved as data, never as a pickle: the codec is
:mod:`loopml.registry.flavors.river_state` (in the registry, which loads registered
checkpoints and sits below training), re-exported here as :func:`encode`, :func:`decode`,
:func:`dumps` and :func:`loads`; :data:`loopml.registry.allowlist.ONLINE` lists the classes
it rebuilds.

:class:`LearnerState` is what a checkpoint of the learning process holds besides the stream
position: the learner (:meth:`OnlineLearner.state`), its prequential metrics and its drift
detector, in one canonical JSON document (keys sorted; the same state gives the same bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from loopml.errors import IntegrityError
from loopml.registry.flavors.river_state import decode, dumps, encode, loads
from loopml.train.online.drift import DriftDetector
from loopml.train.online.learner import OnlineLearner
from loopml.train.online.metrics import Prequential

CHECKPOINT_FORMAT = "loopml.online-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class LearnerState:
    """A learner with its metrics and detector (each may be absent), as one document."""

    learner: OnlineLearner
    metrics: Prequential | None = None
    drift: DriftDetector | None = None

    def to_bytes(self) -> bytes:
        """Canonical JSON of the three (no pickle)."""
        return dumps(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "learner": self.learner.state(),
                "metrics": None if self.metrics is None else self.metrics.state(),
                "drift": None if self.drift is None else self.drift.state(),
            }
        )

    def checksum(self) -> str:
        """sha256 (hex) of :meth:`to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> LearnerState:
        """The state of :meth:`to_bytes`; IntegrityError for a damaged document,
        UnsafeFormatError for one that names a class outside the allowlist."""
        doc: Any = loads(data)
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise IntegrityError(
                f"not an online learner's checkpoint (no 'format': {CHECKPOINT_FORMAT!r})",
                where={"field": "format"},
                hint="Load a checkpoint written by loopml's online learner",
            )
        if doc.get("version") != CHECKPOINT_VERSION:
            raise IntegrityError(
                f"online checkpoint version {doc.get('version')!r}, which this loopml cannot "
                f"read (it reads {CHECKPOINT_VERSION})",
                where={"field": "version"},
                hint="Upgrade loopml, or start the learner again",
            )
        metrics = doc.get("metrics")
        drift = doc.get("drift")
        return cls(
            OnlineLearner.from_state(doc.get("learner")),
            None if metrics is None else Prequential.from_state(metrics),
            None if drift is None else DriftDetector.from_state(drift),
        )


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "LearnerState",
    "decode",
    "dumps",
    "encode",
    "loads",
]
