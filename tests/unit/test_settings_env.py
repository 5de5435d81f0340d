"""``Settings`` reads the ``LOOPML_*`` environment as pydantic-settings' ``BaseSettings``
did (issue 7: without importing it, which cost every ``loopml`` process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from loopml.settings import Settings, load_settings, write_settings_file


class _Prefixed(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPML_", extra="ignore")


#: what Settings was: the same fields on pydantic-settings' BaseSettings
Reference: Any = create_model(  # type: ignore[call-overload]
    "Reference",
    __base__=_Prefixed,
    **{name: (f.annotation, f) for name, f in Settings.model_fields.items()},
)

ENVIRONMENTS = [
    {},
    {"LOOPML_SERVE_PORT": "9001", "LOOPML_SERVE_HOST": "0.0.0.0"},
    {"loopml_serve_token": "lower", "Loopml_Actor": "mixed@host"},  # any case
    {"LOOPML_HTTP_ALLOW_PRIVATE": "true", "LOOPML_LOG_FSYNC_MS": "50.5"},
    {"LOOPML_SERVE_TOKEN": "", "LOOPML_NOT_A_SETTING": "x", "OTHER_SERVE_PORT": "1"},
    {"LOOPML_SERVE_ALLOWED_HOSTS": "a.example,b.example", "LOOPML_ENGINE": "spark"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_environment_reads_as_base_settings_read_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings().model_dump() == Reference().model_dump()
    # an explicit value wins over the environment
    explicit = {"serve_port": 7000, "serve_token": "given"}
    assert Settings(**explicit).model_dump() == Reference(**explicit).model_dump()


@pytest.mark.parametrize(
    "env",
    [{"LOOPML_SERVE_PORT": "abc"}, {"LOOPML_SERVE_COMPILE": "fast"}, {"LOOPML_SERVE_WORKERS": "0"}],
)
def test_a_bad_variable_fails_as_it_did(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as ours:
        Settings()
    with pytest.raises(ValidationError) as theirs:
        Reference()
    assert [e["loc"] for e in ours.value.errors()] == [e["loc"] for e in theirs.value.errors()]


def test_flags_then_environment_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_settings_file(tmp_path, {"serve_port": 8100, "serve_host": "10.0.0.1", "actor": "file"})
    monkeypatch.setenv("LOOPML_SERVE_PORT", "8200")
    monkeypatch.setenv("LOOPML_ACTOR", "env")
    settings = load_settings(tmp_path, {"actor": "flag", "serve_token": None})
    assert (settings.actor, settings.serve_port, settings.serve_host) == ("flag", 8200, "10.0.0.1")


def test_loading_settings_does_not_import_pydantic_settings(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom loopml.settings import load_settings\n"
        f"load_settings(Path({str(tmp_path)!r}))\nprint('pydantic_settings' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
