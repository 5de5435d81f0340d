"""loopml's batch work on Apache Spark (``pip install 'loopml[spark]'``, Java 17)."""
