"""Where batch work runs: in process (the default) or on Apache Spark.

The embedded default never imports Spark. ``engine: spark`` in the settings (or
``--engine spark`` on the command line) sends ingestion, statistics, drift, batch scoring and
training to a Spark cluster named by ``spark_master``, over the same lake and registry; the
results equal the local ones.
"""

from __future__ import annotations

ENGINES = ("local", "spark")
