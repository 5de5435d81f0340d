"""Contract test kits for store backends, in the spirit of scikit-learn's ``estimator_checks``.

A backend passes when every check passes::

    from loopml.testing import check_lake
    check_lake(lambda: MyLake("my://bucket/prefix"))

or, to see each check as its own test::

    @pytest.mark.parametrize(("name", "check"), list(lake_checks()))
    def test_my_lake(name, check):
        check(lambda: MyLake("my://bucket/prefix"))

A factory returns an opened store; each call may return a new store over the same backend
(checks that reopen a store rely on that), and the checks close what they open. Every check
works under fresh, unique names, so a backend shared with other data (or other checks) is fine.
A check that cannot run on a backend raises ``unittest.SkipTest``, which pytest reports as a
skip.
"""

from loopml.testing.artifacts import artifact_store_checks, check_artifact_store
from loopml.testing.lake import check_lake, lake_checks
from loopml.testing.metadata import (
    _dataset,
    _exited_owner,
    _model,
    _run,
    check_metadata_store,
    metadata_store_checks,
)

__all__ = [
    "_dataset",
    "_exited_owner",
    "_model",
    "_run",
    "artifact_store_checks",
    "check_artifact_store",
    "check_lake",
    "check_metadata_store",
    "lake_checks",
    "metadata_store_checks",
]
