"""``benchmarks/bench_online.py --smoke`` runs to its table and its JSON line: loopml learn
consumed every event from Redis, checkpointed, and reached River's accuracy on them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_unavailable

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_online.py"


@pytest.mark.slow
def test_bench_online_smoke() -> None:
    with socket.socket() as sock:
        sock.settimeout(1)
        if sock.connect_ex(("127.0.0.1", 6379)) != 0:
            service_unavailable("Redis is not reachable at 127.0.0.1:6379")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| loopml learn from Redis, checkpointed |" in proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["events"] == 3000 and result["checkpoints"] == 3
    assert result["loopml_events_per_cpu_s"] > 0 and result["checkpoint_p99_ms"] > 0
