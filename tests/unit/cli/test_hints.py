"""Every ``loopml ...`` command that a message or a hint names is a command that exists."""

from __future__ import annotations

import re
from pathlib import Path

import typer

import loopml
from loopml.cli.main import app

SRC = Path(loopml.__file__).parent
# a command as hints write it: 'loopml runs list', `loopml init`, "run loopml train"
MENTION = re.compile(r"(?:'|`|\brun )loopml((?: [a-z][a-z-]*)+)")


def _unknown(words: list[str]) -> str | None:
    """The first word that is not a command where a command is expected, else None."""
    command: object = typer.main.get_command(app)
    for word in words:
        commands = getattr(command, "commands", None)
        if commands is None:
            return None  # a command: the rest are its arguments
        if word not in commands:
            return word
        command = commands[word]
    return None


def test_the_scan_sees_a_wrong_command() -> None:
    assert _unknown(["models", "runs"]) == "runs"
    assert _unknown(["runs", "list"]) is None
    assert _unknown(["train", "anything"]) is None


def test_every_command_named_in_the_source_exists() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in MENTION.finditer(line):
                word = _unknown(match.group(1).split())
                if word is not None:
                    where = f"{path.relative_to(SRC)}:{number}"
                    wrong.append(f"{where}: loopml{match.group(1)} ({word!r} is no command)")
    assert wrong == []
