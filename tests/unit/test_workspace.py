from pathlib import Path

import pytest

from loopml.errors import ConfigError, NotFoundError, StoreError
from loopml.settings import SETTINGS_FILE
from loopml.workspace import init, open_workspace


def test_a_wrong_uri_leaves_no_workspace_behind(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        init(root, metadata_uri="postgresql://nobody@127.0.0.1:1/x")
    assert not root.exists()
    with pytest.raises(ConfigError, match="ftp"):
        init(root, lake_uri="ftp://host/x")
    assert not root.exists()


def test_a_failed_re_init_keeps_the_working_settings(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init(root).close()
    before = (root / SETTINGS_FILE).read_text()
    with pytest.raises(ConfigError):
        init(root, lake_uri="ftp://host/x")
    assert (root / SETTINGS_FILE).read_text() == before
    open_workspace(root).close()


def test_precedence_flags_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    init(root).close()
    other = (tmp_path / "elsewhere").as_uri()
    monkeypatch.setenv("LOOPML_LAKE_URI", other)
    with open_workspace(root) as ws:
        assert ws.lake_uri == other
    flag = (tmp_path / "flag").as_uri()
    with open_workspace(root, lake_uri=flag) as ws:
        assert ws.lake_uri == flag


def test_home_variable_and_missing_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    with pytest.raises(NotFoundError, match="loopml init"):
        open_workspace()
    init().close()
    with open_workspace() as ws:
        assert ws.root == (tmp_path / "home").resolve()
