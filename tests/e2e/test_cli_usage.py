"""Usage errors are the user's mistake (exit 2, typer's usage message), never "a bug".

Every command and command group is found by walking the typer app, so a new command is
covered without editing this file.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer

import loopml
from loopml.cli.main import app

from .conftest import Result

# what the handler says about a bug ("--debug" in a help text is fine)
BUG_WORDS = ("a bug in loopml", "internal error", "traceback (most recent call last)")


def _walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], bool]]:
    subcommands = getattr(command, "commands", None)
    yield path, subcommands is not None
    for name, sub in sorted((subcommands or {}).items()):
        if not getattr(sub, "hidden", False):
            yield from _walk(sub, (*path, name))


COMMANDS = [path for path, _ in _walk(typer.main.get_command(app), ()) if path]
GROUPS = [path for path, is_group in _walk(typer.main.get_command(app), ()) if is_group]


def _ids(paths: list[tuple[str, ...]]) -> list[str]:
    return [" ".join(p) or "loopml" for p in paths]


def assert_usage_error(r: Result, *expected: str) -> None:
    text = r.out + r.err
    assert r.code == 2, text
    assert "Usage: loopml" in text, text
    for piece in expected:
        assert piece in text, text
    lowered = text.lower()
    for word in BUG_WORDS:
        assert word not in lowered, text


def test_the_walk_finds_every_command_group() -> None:
    # a guard on the walk itself: it must see nested groups and their commands
    names = set(_ids(COMMANDS))
    assert {"train", "serve", "trace", "data", "data ingest", "models show", "runs list"} <= names
    assert ("data",) in GROUPS and () in GROUPS


@pytest.mark.parametrize("path", COMMANDS, ids=_ids(COMMANDS))
def test_a_bad_option_is_a_usage_error(cli: Callable[..., Result], path: tuple[str, ...]) -> None:
    r = cli(*path, "--no-such-option")
    assert_usage_error(r, "No such option", "--no-such-option")


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=_ids([(), *COMMANDS]))
def test_help_exits_0(cli: Callable[..., Result], path: tuple[str, ...]) -> None:
    r = cli(*path, "--help")
    assert r.code == 0, r.out + r.err
    assert "Usage: loopml" in r.out
    assert r.err == ""


@pytest.mark.parametrize("path", GROUPS, ids=_ids(GROUPS))
def test_a_group_without_a_command_prints_its_help(
    cli: Callable[..., Result], path: tuple[str, ...]
) -> None:
    r = cli(*path)
    text = r.out + r.err
    assert r.code in (0, 2), text  # click's no_args_is_help exits 2 since click 8.2
    assert "Usage: loopml" in text and "Commands" in text
    assert not any(word in text.lower() for word in BUG_WORDS), text


def test_an_unknown_command_suggests_the_close_one(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("trainn"), "No such command", "train")


def test_an_unknown_root_option(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("--bogus"), "No such option: --bogus")


def test_a_bad_option_value_names_the_option(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("serve", "--port", "abc"), "--port")


def test_a_missing_argument_names_it(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("trace"), "Missing argument")
    assert "prediction_id" in cli("trace").err.lower()


def test_a_missing_required_option_names_it(cli: Callable[..., Result]) -> None:
    assert_usage_error(cli("data", "ingest", "x.csv"), "Missing option", "--name")


def test_version(cli: Callable[..., Result]) -> None:
    r = cli("--version")
    assert (r.code, r.out, r.err) == (0, f"loopml {loopml.__version__}\n", "")


def test_version_comes_before_any_command(cli: Callable[..., Result]) -> None:
    # eager: it answers even when the rest of the line would be an error
    assert cli("--version", "trainn").code == 0


def test_the_shell_sees_the_exit_codes() -> None:
    exe = Path(sys.executable).with_name("loopml")
    if not exe.exists():
        pytest.skip(f"no console script at {exe}: pip install -e .")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, timeout=120, check=False
        )

    bad = run("trainn")
    assert bad.returncode == 2, bad.stderr
    assert "No such command" in bad.stderr
    assert not any(word in bad.stderr.lower() for word in BUG_WORDS)
    version = run("--version")
    assert (version.returncode, version.stdout) == (0, f"loopml {loopml.__version__}\n")
    assert run("--help").returncode == 0


def test_typer_is_pinned_to_the_tested_minor_range() -> None:
    # the handler is tested against the installed typer only; pyproject.toml says so
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    pyproject = Path(__file__).parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in deps if Requirement(d).name == "typer")
    installed = version("typer")
    assert pin.specifier.contains(installed), (str(pin), installed)
    major, minor = (int(p) for p in installed.split(".")[:2])
    assert not pin.specifier.contains(f"{major}.{minor + 1}.0"), f"{pin} allows an untested minor"
    assert not pin.specifier.contains(f"{major}.{minor - 1}.0"), f"{pin} allows an untested minor"


def _flat(text: str) -> str:
    """Help text without the box drawing and the wrapping of rich's panels."""
    return " ".join(text.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@pytest.mark.parametrize("path", COMMANDS, ids=_ids(COMMANDS))
def test_every_option_help_is_shown_whole(
    cli: Callable[..., Result], path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    # wide enough that no metavar column wraps into the help column beside it
    monkeypatch.setenv("COLUMNS", "240")
    # "[default: ...]" in a help text must not be eaten as console markup
    command: object = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
    shown = _flat(cli(*path, "--help").out)
    for param in command.params:  # type: ignore[attr-defined]
        for text in (getattr(param, "help", None), getattr(param, "show_default", None)):
            if isinstance(text, str) and text:
                assert _flat(text) in shown, (param.name, shown)
