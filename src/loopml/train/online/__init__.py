"""Online learning: learners that learn from every event, saved as data.

- :class:`OnlineLearner` (:mod:`.learner`): a River model or pipeline, or a scikit-learn
  estimator with ``partial_fit``, built from the project's ``online:`` section
  (:class:`loopml.project.online.OnlineSpec`); ``predict_one``, ``learn_one``,
  ``learn_many``, ``state_bytes``, ``checksum``.
- :class:`Prequential` (:mod:`.metrics`): test-then-train metrics, cumulative and windowed.
- :class:`DriftDetector` (:mod:`.drift`): ADWIN, Page-Hinkley or an error-window test.
- :class:`LearnerState` (:mod:`.state`): the three in one checkpoint document.
"""

from loopml.train.online.drift import DETECTORS, DriftDetector
from loopml.train.online.learner import OnlineLearner
from loopml.train.online.metrics import Prequential
from loopml.train.online.state import LearnerState

__all__ = ["DETECTORS", "DriftDetector", "LearnerState", "OnlineLearner", "Prequential"]
