"""Run every benchmark in this folder, one after another, and print their tables.

python benchmarks/run_all.py            # the sizes BENCHMARKS.md reports (minutes)
python benchmarks/run_all.py --quick    # tiny sizes: checks that each one runs (seconds)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

#: arguments that make each benchmark tiny (the smoke test runs these)
QUICK: dict[str, list[str]] = {
    "bench_drift.py": ["--rows", "2000", "--repeats", "1"],
    "bench_features.py": ["--rows", "2000", "--repeats", "1"],
    "bench_ingest_sql.py": ["--rows", "2000"],
    "bench_ingest.py": ["--rows", "20000"],
    "bench_online.py": ["--smoke"],
    "bench_predict.py": ["--rows", "5000", "--repeat", "1", "--batch-size", "1000"],
    "bench_serving.py": ["--quick", "--models", "lgbm"],
    "bench_spark.py": ["--smoke"],
    "bench_stats.py": ["--rows", "2000"],
    "bench_torch.py": ["--rows", "2000", "--features", "10", "--seconds", "0.3"],
    "bench_train.py": ["--rows", "2000", "--features", "30"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    here = Path(__file__).parent
    failed = 0
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n## {script.name}\n", flush=True)
        extra = QUICK.get(script.name, []) if args.quick else []
        rc = subprocess.call([sys.executable, str(script), *extra])
        if rc:
            print(f"{script.name} exited {rc}", flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
