"""A Spark standalone cluster on 127.0.0.1 for tests: a master and workers started from
pyspark's own ``bin/spark-class`` on free ports, waited for, and stopped by pid.

Each daemon runs in a process group of its own (``start_new_session``), so stopping it by its
pid's group also ends the executors its worker launched. Nothing is left running: the context
manager stops everything it started, on success or failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 120.0  # seconds for the master to listen and every worker to register


@dataclass
class Cluster:
    master_url: str
    folder: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def executor_dirs(self) -> list[Path]:
        """The folders workers made for the executors they launched (one per app and worker)."""
        return sorted(self.folder.glob("work-*/app-*/*"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@contextmanager
def standalone_cluster(
    folder: Path, *, workers: int = 2, worker_memory: str = "1g"
) -> Iterator[Cluster]:
    """Start a master and ``workers`` workers (1 core, ``worker_memory`` each)."""
    folder.mkdir(parents=True, exist_ok=True)
    home = spark_home()
    spark_class = str(home / "bin" / "spark-class")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(folder),
        "SPARK_NO_DAEMONIZE": "1",
    }
    port = free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", folder)

    def start(name: str, *args: str) -> None:
        with open(folder / f"{name}.log", "wb") as log:
            cluster.procs.append(
                subprocess.Popen(
                    [spark_class, *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=folder,
                    start_new_session=True,
                )
            )

    try:
        start(
            "master", "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(port), "--webui-port", "0",
        )  # fmt: skip
        _wait(cluster, lambda: _listens(port), "the master to listen")
        for i in range(workers):
            work = folder / f"work-{i}"
            work.mkdir(exist_ok=True)
            start(
                f"worker-{i}", "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--webui-port", "0", "--cores", "1",
                "--memory", worker_memory, "--work-dir", str(work), cluster.master_url,
            )  # fmt: skip
        _wait(
            cluster,
            lambda: cluster.log("master").count("Registering worker") >= workers,
            f"{workers} workers to register",
        )
        yield cluster
    finally:
        stop(cluster)


def stop(cluster: Cluster) -> None:
    """SIGTERM each daemon's process group (workers first), then SIGKILL what is left."""
    for proc in reversed(cluster.procs):
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in reversed(cluster.procs):
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait(timeout=10)
    for proc in cluster.procs:  # executors are in their worker's group: gone with it
        _signal(proc, signal.SIGKILL)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this daemon leads (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(cluster: Cluster, ready: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if callable(ready) and ready():
            return
        dead = [p for p in cluster.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(
                f"a Spark daemon exited (code {dead[0].returncode}) while waiting for {what}:\n"
                + cluster.log("master")[-2000:]
            )
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {START_TIMEOUT:.0f}s waiting for {what}")
