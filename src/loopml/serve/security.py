"""The server's safe defaults: a token always, the Host header checked, JSON bodies only.

* **Token.** Every endpoint that changes state needs ``Authorization: Bearer <token>``, even
  when none was configured: then one is generated into ``<workspace>/serve-token`` (mode
  0600, created complete under a temporary name and linked into place, so it is never
  world-readable nor half-written). A token comes from the Python API, ``--token-file`` /
  ``serve_token_file``, or ``LOOPML_SERVE_TOKEN``; never from argv, which ``ps`` shows.
* **Host.** A browser page can make a victim's browser POST ``text/plain`` to
  ``127.0.0.1`` without a preflight, through a DNS name that rebinds to it; such a request
  carries the attacker's name in ``Host``. The server answers only the Host names it was
  bound to or told (``--allowed-host``, ``serve_allowed_hosts``); ``*`` allows any.
* **Content type.** JSON routes take ``application/json`` (or ``+json``) only: 415 otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import ConfigError
from loopml.serve.events import log
from loopml.utils import shorten
from loopml.workspace import Workspace

TOKEN_FILE = "serve-token"
LOOPBACK_NAMES = frozenset(("localhost", "127.0.0.1", "::1"))
WILDCARDS = frozenset(("0.0.0.0", "::", ""))


# -- token ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeToken:
    """The bearer token and where it came from (``path`` when it is in a file)."""

    value: str
    source: str  # "argument", "file", "environment" or "workspace"
    path: Path | None = None

    def describe(self) -> str:
        """Where the token is, for a log line; never the token itself."""
        if self.path is not None:
            return f"in {self.path}"
        return "from LOOPML_SERVE_TOKEN" if self.source == "environment" else "as configured"


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace stripped)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            f"token file {shorten(str(p))!r} does not exist",
            where={"file": str(p)},
            hint="Write the token into it (one line), or leave --token-file out to use the "
            "workspace's generated token",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read token file {shorten(str(p))!r}: {exc}",
            where={"file": str(p)},
            hint="Make it a readable UTF-8 text file holding the token",
        ) from exc
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError(
            f"token file {shorten(str(p))!r} is empty or holds more than one word",
            where={"file": str(p)},
            hint="Write the token alone on one line",
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s can be read by other users; chmod 600 it", p)
    return token


def _create_token_file(path: Path) -> None:
    """Write a new token to ``path`` unless it exists; complete and 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails if another server created it first
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: exclusive create instead
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(out, "w", encoding="utf-8") as fh:
                fh.write(Path(tmp).read_text(encoding="utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        os.unlink(tmp)


def workspace_token(ws: Workspace) -> ServeToken:
    """The workspace's own token, ``<workspace>/serve-token``, generated on first use."""
    path = ws.root / TOKEN_FILE
    if not path.exists():
        try:
            _create_token_file(path)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the server's token to {path}: {exc.strerror or exc}",
                where={"file": str(path)},
                hint="Set LOOPML_SERVE_TOKEN or pass --token-file with a token of your own",
            ) from exc
        log.info("generated a bearer token for state-changing endpoints in %s", path)
    return ServeToken(read_token_file(path), "workspace", path)


def resolve_token(
    ws: Workspace, *, token: str | None = None, token_file: str | Path | None = None
) -> ServeToken:
    """The server's token: ``token`` > ``token_file`` > ``LOOPML_SERVE_TOKEN`` (the
    ``serve_token`` setting) > ``serve_token_file`` > the workspace's generated one."""
    if token:
        return ServeToken(token, "argument")
    if token_file:
        return ServeToken(read_token_file(token_file), "file", Path(token_file).expanduser())
    settings = ws.settings
    if settings.serve_token:
        return ServeToken(settings.serve_token, "environment")
    if settings.serve_token_file:
        path = Path(settings.serve_token_file).expanduser()
        if not path.is_absolute():  # a setting's relative path is inside the workspace
            path = ws.root / path
        return ServeToken(read_token_file(path), "file", path)
    return workspace_token(ws)


# -- Host header ----------------------------------------------------------------------------


def normalize_host(value: str) -> str:
    """``Example.COM:8000`` -> ``example.com``; ``[::1]:8000`` -> ``::1``."""
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bound: str, listed: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names to answer (normalised), or None for any (``*`` listed).

    The bound host and the listed names; plus localhost, 127.0.0.1 and ::1 when bound to a
    loopback address or to every interface. Bound to every interface (0.0.0.0, ::), the
    names clients use must be listed (or ``*``): the server cannot know them.
    """
    names = {normalize_host(h) for h in listed if h and h.strip()}
    if "*" in names:
        return None
    host = normalize_host(bound)
    wildcard = host in WILDCARDS
    if wildcard and not names:
        raise ConfigError(
            f"serving on {bound or 'every interface'} needs the host names clients use",
            where={"field": "allowed_hosts"},
            hint="List them with --allowed-host NAME (repeatable) or serve_allowed_hosts; "
            "--allowed-host '*' answers any Host header (open to DNS rebinding)",
        )
    if not wildcard:
        names.add(host)
    if wildcard or _is_loopback(host):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def split_hosts(text: str) -> list[str]:
    """``"a, b"`` (the ``serve_allowed_hosts`` setting) -> ``["a", "b"]``."""
    return [h.strip() for h in text.split(",") if h.strip()]


# -- content type ---------------------------------------------------------------------------


def is_json_type(value: str | None) -> bool:
    """``application/json`` or ``application/*+json``, optionally ``charset=utf-8``."""
    if value is None:
        return False
    if value == "application/json":
        return True
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


__all__ = [
    "LOOPBACK_NAMES",
    "TOKEN_FILE",
    "ServeToken",
    "allowed_hosts",
    "is_json_type",
    "normalize_host",
    "read_token_file",
    "resolve_token",
    "split_hosts",
    "workspace_token",
]
