"""One SparkSession per master, opened with loopml's settings and checked before it starts.

Spark's own failures are slow and long (an unreachable master retries for a minute, no Java
prints a shell error), so the things a user gets wrong are checked first and answered in
one line that names the thing and the fix: pyspark not installed, no ``java`` on the PATH or
in ``JAVA_HOME``, a ``spark://`` master that does not answer, a malformed ``spark_conf``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loopml.errors import ConfigError, StoreError
from loopml.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOCK = threading.Lock()
_SESSIONS: dict[str, SparkSession] = {}
CONNECT_TIMEOUT = 3.0  # seconds to wait for a spark:// master to accept a connection

# Settings every loopml session gets: no web UI, UTC timestamps (so Spark and pyarrow agree
# on what a timestamp means), Arrow for pandas exchange, few shuffle partitions for small jobs.
DEFAULTS: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}


def parse_conf(text: str, where: str = "spark_conf") -> dict[str, str]:
    """``"a=1, b=2"`` as ``{"a": "1", "b": "2"}``; a piece without ``=`` is refused."""
    conf: dict[str, str] = {}
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{where}: {piece!r} is not key=value",
                where={"setting": where},
                hint="write spark settings as key=value, comma-separated, "
                "e.g. spark.executor.memory=4g,spark.sql.shuffle.partitions=64",
            )
        conf[key.strip()] = value.strip()
    return conf


def check_java() -> str:
    """The java executable Spark will start, or a ConfigError saying how to get one."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        if os.access(candidate, os.X_OK):
            return candidate
        raise ConfigError(
            f"JAVA_HOME={home} has no bin/java",
            where={"env": "JAVA_HOME"},
            hint="point JAVA_HOME at a Java 17 (or newer) installation, or unset it",
        )
    found = shutil.which("java")
    if found is None:
        raise ConfigError(
            "Spark needs Java, and no java is on the PATH",
            where={"setting": "engine"},
            hint="install Java 17 (e.g. apt install openjdk-17-jre-headless) or set JAVA_HOME; "
            "or run with --engine local",
        )
    return found


def check_master(master: str) -> None:
    """A ``spark://host:port`` master must accept a TCP connection within a few seconds."""
    if not master.startswith("spark://"):
        return
    for address in master.removeprefix("spark://").split(","):
        parts = urlsplit(f"spark://{address}")
        host, port = parts.hostname, parts.port or 7077
        if host is None:
            break
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                return
        except OSError:
            continue
    raise StoreError(
        f"the Spark master {master} does not answer",
        where={"setting": "spark_master"},
        hint="start the master (spark-class org.apache.spark.deploy.master.Master) or give "
        "the right --spark-master URL; local[N] runs Spark in this process",
    )


def _import_pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError as exc:
        raise ConfigError(
            "the Spark engine needs pyspark, which is not installed",
            where={"setting": "engine"},
            hint="pip install 'loopml[spark]', or run with --engine local",
        ) from exc
    return pyspark.sql


def spark_session(
    settings: Settings | None = None,
    *,
    master: str | None = None,
    conf: dict[str, str] | None = None,
    app_name: str = "loopml",
) -> SparkSession:
    """The SparkSession for ``master`` (default: ``settings.spark_master``), opened once.

    Spark allows one active session per process; asking for another master while one is
    open stops the old one first.
    """
    settings = settings or Settings()  # type: ignore[call-arg]  # LOOPML_SPARK_* from the environment
    master = master or settings.spark_master or "local[2]"
    wanted = {**DEFAULTS, **_python(), **parse_conf(settings.spark_conf), **(conf or {})}
    sql = _import_pyspark()
    # pyspark 4.x warns on every pandas UDF under pandas 3, which loopml's tests cover
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    with _LOCK:
        open_session = _SESSIONS.get(master)
        if open_session is not None and _alive(open_session):
            return open_session
        check_java()
        check_master(master)
        for other in list(_SESSIONS):
            _SESSIONS.pop(other).stop()
        _use_python(wanted)
        builder = sql.SparkSession.builder.master(master).appName(app_name)
        for key, value in wanted.items():
            builder = builder.config(key, value)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # py4j / JVM start-up failures are not typed
            raise StoreError(
                f"Spark could not start against {master}: {str(exc).splitlines()[0][:300]}",
                where={"setting": "spark_master"},
                hint="check the master URL, Java 17 and the spark_conf settings",
            ) from exc
        session.sparkContext.setLogLevel("ERROR")
        _SESSIONS[master] = session
        return session


def _python() -> dict[str, str]:
    """Python workers run this interpreter (its packages, loopml included) unless
    PYSPARK_PYTHON or spark_conf's spark.pyspark.python says otherwise: on a cluster whose
    nodes install Python elsewhere, set spark.pyspark.python in spark_conf."""
    return {"spark.pyspark.python": os.environ.get("PYSPARK_PYTHON") or sys.executable}


def _use_python(wanted: dict[str, str]) -> None:
    """PySpark takes the workers' interpreter from PYSPARK_PYTHON when the context starts."""
    os.environ["PYSPARK_PYTHON"] = wanted["spark.pyspark.python"]


def _alive(session: SparkSession) -> bool:
    try:
        return not session.sparkContext._jsc.sc().isStopped()  # type: ignore[union-attr]
    except Exception:
        return False


def stop_sessions() -> None:
    """Stop every session this module opened (tests, and the CLI at exit)."""
    with _LOCK:
        for master in list(_SESSIONS):
            _SESSIONS.pop(master).stop()
