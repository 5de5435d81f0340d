"""Small helpers shared by several stages."""

from __future__ import annotations

import hashlib
import importlib
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shorten(value: object, limit: int = 80) -> str:
    """``value`` as text of at most ``limit`` characters, cut with an ellipsis.

    For user values shown in messages and error bodies: a 64 MiB string sent as a feature
    must not come back in the error. A ``str`` is shown as is, anything else by its
    ``repr`` (pass ``repr(s)`` to show a string quoted).
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Temporary file in the same folder, fsync, rename over the target, fsync the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- process owners ---------------------------------------------------------------------------
# A claim marker or a running run records the process that holds it, so that a later process
# can tell a holder that died (killed, crashed, its machine rebooted) from one still at work.


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _pid_space() -> str | None:
    """This kernel boot and pid namespace (Linux): two processes share pids only inside one."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}/{namespace}" if boot else None


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) from ``/proc/<pid>/stat``; None if absent."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text.rpartition(")")[2].split()  # the command name in (...) may hold spaces
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 (state) and 22 (starttime) of proc(5)


def _has_proc() -> bool:
    return os.path.exists(f"/proc/{os.getpid()}/stat")


def process_owner(pid: int | None = None) -> dict[str, Any]:
    """Who process ``pid`` (default: this one) is, JSON-friendly, to tell later if it died.

    ``host`` (host name), ``pid``, ``started`` (its start time, where ``/proc`` tells it) and
    ``machine`` (the kernel boot and pid namespace, where ``/proc`` tells them): a pid on
    another machine, container or boot is another process.
    """
    pid = os.getpid() if pid is None else pid
    owner: dict[str, Any] = {"host": socket.gethostname(), "pid": pid}
    stat = _proc_stat(pid) if _has_proc() else None
    if stat is not None:
        owner["started"] = stat[1]
    machine = _pid_space()
    if machine is not None:
        owner["machine"] = machine
    return owner


def owner_alive(owner: object) -> bool | None:
    """Whether the process an owner (:func:`process_owner`) names still runs.

    True or False for a process of this machine; None when it cannot be told: another host
    (or container, or boot), or no usable owner. Gone means: no such pid, a zombie, or a pid
    that now belongs to a process started at another time (reused). Without ``/proc`` the pid
    alone is checked (``os.kill(pid, 0)``); on Windows nothing is (None).
    """
    if not isinstance(owner, Mapping):
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if owner.get("host") != socket.gethostname() or owner.get("machine") != _pid_space():
        return None
    stat = _proc_stat(pid) if _has_proc() else None
    if stat is not None:
        state, started = stat
        if state in ("Z", "X"):  # exited, not yet reaped by its parent
            return False
        wanted = owner.get("started")
        return wanted is None or str(wanted) == started
    # no /proc, or the pid is not in it (gone, or hidden by hidepid): ask the kernel
    if os.name == "nt":  # os.kill would terminate the process there, not probe it
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return None
    return True


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` (PEP 562) that imports ``names[attr]`` on first use.

    ``names`` maps each exported name to the module that defines it; the value is cached on
    the package, so the import happens once.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
