"""The process a server compiles a version in: ``python -m loopml.registry.compile_worker``.

Converting a bundle to ONNX is pure Python that holds the GIL for seconds (skl2onnx takes
~9 CPU s for a 100-tree forest); done in a thread of the serving process it slows every
request while it runs. A server therefore never compiles itself
(:func:`loopml.registry.compiled.serving_predictor`): it starts this module, waits for it off
the event loop, then loads the graph it cached (milliseconds to half a second).

It stays up while its server lives (it exits when its stdin closes; the server closes it
after :data:`loopml.registry.compiled.WORKER_IDLE_S` without a job), so that only its first
job pays for importing scikit-learn, skl2onnx and ONNX Runtime (~2 CPU s). A job is one
JSON line on stdin (never on the command line, which other users can read): the workspace
folder, its settings and the URIs of its lake and artifact store (to
open the same stores; the metadata store is not needed, nor opened), the bundle's
sha256, its name for messages (``NAME@VERSION``) and the opt-ins its version records. The
worker reads the bundle from the artifact store as :func:`loopml.registry.load_model` does
(checked against its sha256, only loopml's allowlist plus those opt-ins) and runs
:func:`~loopml.registry.compiled.load_predictor` in mode ``auto``, which compiles, checks
against the native model and writes the pointer file atomically (or, when another process
got there first, finds it). Nothing else runs: no user code beyond what loading a bundle
does anyway. It answers one JSON line per job, the outcome or the error; exit 2 means a
job it could not read. It runs on any core, not only
those its server is pinned to (:func:`spread`), so that the server keeps its own; at the
server's priority (a lower one, ``nice`` 5 or 10, made the benchmark's swap two to three
times slower on a busy machine without answering its requests any faster).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass
class Stores:
    """The two stores compiling uses (the metadata store is not opened: not needed)."""

    root: Path
    settings: Any
    lake: Any
    artifacts: Any


def open_stores(job: dict[str, Any]) -> Stores:
    from loopml.settings import Settings
    from loopml.stores.registry import open_artifacts, open_lake
    from loopml.workspace import default_uris

    root = Path(str(job["root"]))
    settings = Settings(**dict(job.get("settings") or {}))
    defaults = default_uris(root)
    lake_uri = str(job.get("lake_uri") or settings.lake_uri or defaults["lake_uri"])
    artifacts_uri = str(
        job.get("artifacts_uri") or settings.artifacts_uri or defaults["artifacts_uri"]
    )
    return Stores(
        root, settings, open_lake(lake_uri, settings), open_artifacts(artifacts_uri, settings)
    )


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Compile (or find compiled) the bundle the job names; the outcome as a dict."""
    from loopml.registry.bundle import ModelBundle
    from loopml.registry.compiled import load_predictor

    stores = open_stores(job)
    sha = str(job["bundle_sha256"])
    what = str(job.get("what") or sha[:12])
    trusted = [str(t) for t in job.get("trusted") or ()]
    data = stores.artifacts.get(sha)
    bundle = ModelBundle.from_bytes(data, what=what, trusted=trusted)
    predictor = load_predictor(stores, bundle, sha, mode="auto")
    check = predictor.check
    return {
        "kind": predictor.kind,
        "reason": predictor.reason,
        "pid": os.getpid(),
        **(check.to_dict() if check is not None else {}),
    }


def spread() -> None:
    """Run on any core this machine lets the process use, not only the server's: a server
    pinned to one core (taskset) would otherwise share it with the compile."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except (AttributeError, OSError):  # not Linux, or a cpuset that refuses: stay put
        pass


def main() -> int:
    """Answer jobs, one JSON line each on stdin, with one JSON line each on stdout
    (``{"ok": outcome}`` or ``{"error": message}``), until stdin closes."""
    # the answers get a stdout of their own; anything a converter prints goes to stderr
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    spread()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            job = orjson.loads(line)
            if not isinstance(job, dict) or "root" not in job or "bundle_sha256" not in job:
                raise ValueError("a job is an object with root and bundle_sha256")
        except ValueError as exc:
            print(f"loopml compile worker: unreadable job: {exc}", file=sys.stderr)
            return 2
        try:
            answer: dict[str, Any] = {"ok": run_job(job)}
        except Exception as exc:  # this job failed; the next may not
            answer = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        answers.write(orjson.dumps(answer) + b"\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
