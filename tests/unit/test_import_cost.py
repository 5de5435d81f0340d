"""Commands that fit nothing import nothing heavy: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

# module -> packages it must not pull in
LIGHT = {
    "loopml.cli.main": ("sklearn", "pyspark", "river", "torch", "lightgbm", "tensorflow", "keras"),
    "loopml.registry.signature": ("sklearn",),
    "loopml.monitor.drift": ("sklearn", "scipy.stats"),
    "loopml.engines": ("pyspark",),
}


@pytest.mark.parametrize("module", sorted(LIGHT))
def test_importing_does_not_load_heavy_packages(module: str) -> None:
    heavy = LIGHT[module]
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{module} imports {done.stdout.strip()}"


def test_the_lazy_features_names_still_resolve() -> None:
    import loopml.features as features

    assert features.DatetimeFeatures.__name__ == "DatetimeFeatures"
    assert callable(features.build_transformer)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = features.nope  # type: ignore[attr-defined]
