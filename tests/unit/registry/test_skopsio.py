"""skops.io is imported without its default trust list (see loopml.registry.skopsio)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "loopml"


def test_skops_trusts_no_estimator_by_default_when_loopml_imports_it() -> None:
    code = (
        "from loopml.registry.skopsio import skops_io; sio = skops_io(); "
        "import skops.io._trusted_types as t, sklearn.utils; "
        "assert t.SKLEARN_ESTIMATOR_TYPE_NAMES == [], len(t.SKLEARN_ESTIMATOR_TYPE_NAMES); "
        "assert sklearn.utils.all_estimators()  # put back after the import"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_module_imports_skops_through_skopsio() -> None:
    direct = re.compile(r"^\s*(import skops|from skops)", re.MULTILINE)
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "skopsio.py" and direct.search(p.read_text())
    ]
    assert offenders == []


def test_a_bundle_round_trips_through_skopsio() -> None:
    code = (
        "import numpy as np, pandas as pd\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "from loopml.train.fit import fit_bundle\n"
        "from loopml.registry.bundle import ModelBundle\n"
        "f = pd.DataFrame({'a': np.arange(60.0), 'c': list('xyz') * 20})\n"
        "f['y'] = (f['a'] > 30).astype(int)\n"
        "b, x = fit_bundle(f, 'y', RandomForestClassifier(n_estimators=3, random_state=0))\n"
        "again = ModelBundle.from_bytes(b.to_bytes())\n"
        "assert (again.predict_frame(x).labels == b.predict_frame(x).labels).all()\n"
        "import skops.io._trusted_types as t\n"
        "assert t.SKLEARN_ESTIMATOR_TYPE_NAMES == []\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
