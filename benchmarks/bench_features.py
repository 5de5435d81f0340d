"""Feature pipelines: loopml's against the same steps written as a plain ColumnTransformer.

``--rows`` rows x 30 mixed columns (20 numeric with missing values, 8 categorical, 2
timestamps), a binary target. Each variant runs in its own child process, alternately,
``--repeats`` times, in the same run; a child fits the pipeline, transforms the rows
(``fit_transform`` then ``transform``) and reports its wall time and peak RSS (the data is
generated in the child before the clock starts, and its RSS then is subtracted, so the
memory is what the pipeline itself takes). Wall and CPU time are both reported: on a shared
machine the CPU time of the process is the steadier of the two.

- ``loopml``: ``features:`` parsed by ``FeatureSpec``, checked and built by
  ``build_transformer`` for a linear model, fitted by ``fit_features``;
- ``direct``: a ``ColumnTransformer`` of the same scikit-learn steps, written by hand (the
  date parts use loopml's ``DatetimeFeatures``: scikit-learn has no such step);
- ``loopml+prepare``: loopml with ``prepare_frame`` too (reading every value as its kind,
  as training does), which the direct pipeline does not do.

Three specs: ``basic`` (median, standard, one-hot), ``rich`` (robust scaling after
Yeo-Johnson, clipping, target encoding, frequency encoding, a capped one-hot) and ``text``
(``rich`` plus a 31st column of free text, 4 to 12 words a row, as TF-IDF of its 50 most
frequent words; the direct pipeline uses scikit-learn's ``TfidfVectorizer``).

    python benchmarks/bench_features.py [--rows 1000000] [--repeats 3] [--specs basic,rich,text]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

N_NUMERIC = 20
N_CATEGORICAL = 8
N_DATES = 2
TEXT_FEATURES = 50  # the text spec's vocabulary

SPECS: dict[str, dict[str, Any]] = {
    "basic": {
        "numeric": {"impute": "median", "scale": "standard"},
        "categorical": {"impute": "most_frequent", "encode": "onehot"},
    },
    "rich": {
        "numeric": {
            "impute": "median",
            "clip": [0.01, 0.99],
            "power": "yeo-johnson",
            "scale": "robust",
        },
        "categorical": {"encode": "target"},
        "columns": {
            "k0": {"encode": "frequency"},
            "k1": {"encode": "onehot", "max_categories": 5},
        },
    },
}
SPECS["text"] = {
    **SPECS["rich"],
    "columns": {
        **SPECS["rich"]["columns"],
        "r0": {"kind": "text", "encode": "tfidf", "max_features": TEXT_FEATURES},
    },
}


def make_frame(n: int, seed: int = 0, text: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        col = rng.normal(scale=1.0 + i, size=n)
        col[rng.random(n) < 0.05] = np.nan
        data[f"x{i}"] = col
    for j in range(N_CATEGORICAL):
        cats = np.asarray([f"c{j}_{v}" for v in range(10 + 3 * j)], dtype=object)
        data[f"k{j}"] = cats[rng.integers(0, len(cats), n)]
    start = np.datetime64("2020-01-01T00:00:00", "s")
    for d in range(N_DATES):
        data[f"t{d}"] = start + rng.integers(0, 3 * 365 * 86400, n).astype("timedelta64[s]")
    if text:  # 4-12 words a row from a vocabulary of 300, the frequent ones more often
        words = np.asarray([f"w{v}" for v in range(300)], dtype=object)
        p = 1.0 / np.arange(1, 301)
        picks = words[rng.choice(300, size=(n, 12), p=p / p.sum())]
        lengths = rng.integers(4, 13, n)
        data["r0"] = [" ".join(row[:k]) for row, k in zip(picks, lengths, strict=True)]
    frame = pd.DataFrame(data)
    frame["y"] = (np.nan_to_num(frame["x0"]) + rng.normal(size=n) > 0).astype(int)
    return frame


def kinds(text: bool = False) -> dict[str, str]:
    out = {f"x{i}": "numeric" for i in range(N_NUMERIC)}
    out |= {f"k{j}": "categorical" for j in range(N_CATEGORICAL)}
    out |= {f"t{d}": "datetime" for d in range(N_DATES)}
    if text:
        out["r0"] = "text"
    return out


def direct_pipeline(spec_name: str) -> Any:
    """The same steps as loopml builds for ``spec_name``, written by hand."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        OneHotEncoder,
        PowerTransformer,
        RobustScaler,
        StandardScaler,
        TargetEncoder,
    )

    from loopml.features.dates import DatetimeFeatures
    from loopml.features.steps import FrequencyEncoder, QuantileClipper

    numeric = [f"x{i}" for i in range(N_NUMERIC)]
    cats = [f"k{j}" for j in range(N_CATEGORICAL)]
    dates = [f"t{d}" for d in range(N_DATES)]
    if spec_name == "basic":
        num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        parts: list[tuple[str, Any, list[str]]] = [
            ("numeric", num, numeric),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                cats,
            ),
        ]
        date_tail: list[tuple[str, Any]] = [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    else:
        num = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median")),
                ("clip", QuantileClipper(0.01, 0.99)),
                ("power", PowerTransformer(standardize=False)),
                ("scale", RobustScaler()),
            ]
        )
        imp = ("impute", SimpleImputer(strategy="most_frequent"))
        parts = [  # in loopml's order: each part where its first column comes
            ("numeric", num, numeric),
            ("categorical_k0", Pipeline([imp, ("encode", FrequencyEncoder())]), ["k0"]),
            (
                "categorical_k1",
                Pipeline(
                    [
                        imp,
                        (
                            "encode",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=5,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                ["k1"],
            ),
            ("categorical", Pipeline([imp, ("encode", TargetEncoder(random_state=0))]), cats[2:]),
        ]
        date_tail = [("impute", SimpleImputer(strategy="median")), ("scale", RobustScaler())]
    parts.append(("datetime", Pipeline([("parts", DatetimeFeatures()), *date_tail]), dates))
    if spec_name == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        parts.append(("text_r0", TfidfVectorizer(max_features=TEXT_FEATURES), "r0"))
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(variant: str, spec_name: str, rows: int) -> dict[str, Any]:
    """One measurement, in this (child) process."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from loopml.features.spec import build_transformer, fit_features, prepare_frame
    from loopml.project import FeatureSpec

    warnings.simplefilter("ignore")
    text = spec_name == "text"
    frame = make_frame(rows, text=text)
    y = frame.pop("y")
    base = _rss_mb()
    start = time.perf_counter()
    cpu = time.process_time()
    if variant == "direct":
        pipe = direct_pipeline(spec_name)
        fitted = pipe.fit_transform(frame, y)
    else:
        x = prepare_frame(frame, kinds(text)) if variant == "loopml+prepare" else frame
        spec = FeatureSpec.from_config(SPECS[spec_name])
        pipe = build_transformer(spec, kinds(text), LogisticRegression(), task="classification")
        fitted = fit_features(pipe, x, y)
        frame = x
    served = pipe.transform(frame)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {
        "variant": variant,
        "spec": spec_name,
        "rows": rows,
        "width": int(np.asarray(served).shape[1]),
        "checksum": float(np.nansum(fitted)) + float(np.nansum(served)),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mb": _rss_mb() - base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--specs", default="basic,rich,text")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "SPEC"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.rows)))
        return
    variants = ("loopml", "direct", "loopml+prepare")
    for spec_name in args.specs.split(","):
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant in variants:  # alternately, so that drift in the machine is shared
                command = [sys.executable, __file__, "--rows", str(args.rows)]
                command += ["--child", variant, spec_name]
                proc = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=3600,
                )
                results[variant].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        widths = {r["width"] for rs in results.values() for r in rs}
        summary = {
            v: {
                "seconds": statistics.median(r["seconds"] for r in rs),
                "cpu": statistics.median(r["cpu_seconds"] for r in rs),
                "peak_mb": statistics.median(r["peak_mb"] for r in rs),
            }
            for v, rs in results.items()
        }
        d = summary["direct"]
        columns = 31 if spec_name == "text" else 30
        print(
            f"spec {spec_name}: {args.rows} rows x {columns} columns -> {sorted(widths)} features"
        )
        for v, s in summary.items():
            print(
                f"  {v:15s} wall {s['seconds']:7.2f} s ({s['seconds'] / d['seconds']:.3f}x)  "
                f"cpu {s['cpu']:7.2f} s ({s['cpu'] / d['cpu']:.3f}x)  "
                f"peak +{s['peak_mb']:6.0f} MB ({s['peak_mb'] / max(d['peak_mb'], 1):.3f}x)"
            )
        a, b = results["loopml"][0]["checksum"], results["direct"][0]["checksum"]
        same = abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
        print(f"  loopml and direct give the same features: {same}")


if __name__ == "__main__":
    main()
