"""One local[2] SparkSession for every Spark test (starting the JVM costs seconds)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import service_unavailable


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        service_unavailable("pyspark is not installed (pip install 'loopml[spark]')")
    if shutil.which("java") is None:
        service_unavailable("Spark needs Java 17 and no java is on the PATH")
    from loopml.engines.spark.session import spark_session, stop_sessions
    from loopml.settings import Settings

    session = spark_session(Settings(), master="local[2]")
    yield session
    stop_sessions()
