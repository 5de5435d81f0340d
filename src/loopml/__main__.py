"""``python -m loopml`` is the ``loopml`` command."""

from loopml.cli.main import run

run()
