"""A local append-only segment log: the prediction log's spool.

A spool is a folder of segment files. The one being written is ``<id>.open``; a full (or old
enough) one is sealed by renaming it ``<id>.seg``, and only sealed segments are compacted.
``<id>`` starts with the UTC time the segment was opened, so names sort by age. Each record
is framed as::

    b"LMLR" | payload length (u32, little-endian) | CRC-32 of the payload (u32) | payload

A process killed in the middle of a write leaves a torn last record: its header or payload is
short, or its checksum does not match. :func:`read_segment` stops at the first such record and
reports the valid prefix, so recovery never reads half a record.

Exactly-once hand-over to the lake uses a marker: after everything a segment holds is written
durably elsewhere, ``<id>.done`` is created, then the segment and the marker are removed. A
segment found next to its marker is already written (only removed). The writer of the lake
parts names them after the segment id, so rewriting a segment whose marker was never made
overwrites the same parts instead of adding copies.

One process owns a spool folder at a time (``.lock``, an advisory ``flock`` that the kernel
releases when the process dies, ``kill -9`` included).
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loopml.errors import ConflictError

MAGIC = b"LMLR"
HEADER = struct.Struct("<4sII")
OPEN = ".open"
SEALED = ".seg"
DONE = ".done"
LOCK = ".lock"
_IOV_MAX = 512  # buffers per writev (the system's limit is at least 1024)


def frame(payload: bytes) -> bytes:
    """One record: header and payload."""
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class SegmentData:
    """What a segment file holds: its valid records and whether a torn tail followed them."""

    records: list[bytes]
    valid_bytes: int
    torn: bool


def read_segment(path: Path) -> SegmentData:
    """The valid records of a segment, stopping at the first torn or corrupt one."""
    data = path.read_bytes()
    records: list[bytes] = []
    at = 0
    n = len(data)
    while at < n:
        if n - at < HEADER.size:
            return SegmentData(records, at, True)
        magic, length, crc = HEADER.unpack_from(data, at)
        end = at + HEADER.size + length
        if magic != MAGIC or end > n:
            return SegmentData(records, at, True)
        payload = data[at + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            return SegmentData(records, at, True)
        records.append(payload)
        at = end
    return SegmentData(records, at, False)


def segment_id(path: Path) -> str:
    return path.name.rsplit(".", 1)[0]


def sealed_segments(folder: Path) -> list[Path]:
    """Sealed segments, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == SEALED)


def all_segments(folder: Path) -> list[Path]:
    """Sealed and open segments, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (SEALED, OPEN))


def spool_bytes(folder: Path) -> int:
    total = 0
    for p in all_segments(folder):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # compacted meanwhile
            continue
    return total


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """fsync a folder (so the names created in it survive a machine crash)."""
    _fsync_dir(folder)


def mark_done(segment: Path) -> None:
    """Record that ``segment`` is durably written elsewhere, then remove it and the marker."""
    marker = segment.with_suffix(DONE)
    fd = os.open(marker, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(segment.parent)
    segment.unlink(missing_ok=True)
    _fsync_dir(segment.parent)
    marker.unlink(missing_ok=True)


def is_done(segment: Path) -> bool:
    return segment.with_suffix(DONE).exists()


def drop_done(segment: Path) -> None:
    """Finish what :func:`mark_done` began before a crash."""
    segment.unlink(missing_ok=True)
    _fsync_dir(segment.parent)
    segment.with_suffix(DONE).unlink(missing_ok=True)


def recover(folder: Path) -> list[Path]:
    """Seal the open segments a dead writer left (caller holds the lock); removes stray
    markers. Returns the sealed segments, oldest first."""
    for p in list(folder.iterdir()):
        if p.suffix == OPEN:
            p.rename(p.with_suffix(SEALED))
        elif p.suffix == DONE and not p.with_suffix(SEALED).exists():
            p.unlink(missing_ok=True)
    _fsync_dir(folder)
    return sealed_segments(folder)


class SpoolLock:
    """The exclusive right to write and compact one spool folder."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._fd = os.open(folder / LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ConflictError(
                f"the prediction log spool {folder} is in use by another process",
                where={"spool": str(folder)},
                hint="Stop the other server (or worker) using this spool, or give this one "
                "another worker number",
                code="spool_in_use",
            ) from None

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class SegmentWriter:
    """Appends framed records to the open segment; rotates by size. Not thread-safe: the
    logger serialises every call with one lock."""

    def __init__(self, folder: Path, *, segment_bytes: int) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._dirty = False
        self._dir_dirty = False  # a segment was created since the folder was last fsynced
        self._seq = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def age(self) -> float:
        return time.monotonic() - self._opened if self._fd >= 0 else 0.0

    def _open(self) -> None:
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{os.getpid()}-{os.urandom(4).hex()}-{self._seq:06d}{OPEN}"
        self._path = self.folder / name
        self._fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_APPEND, 0o644)
        # the folder's fsync (the new name) goes with the next data fsync (fsync(), or the
        # logger's periodic one in its thread), not here: this runs in the server's loop
        self._dir_dirty = True
        self._size = 0
        self._opened = time.monotonic()

    def write(self, payloads: Iterable[bytes]) -> int:
        """Write these records with one ``writev`` call (the headers and payloads as they
        are, not copied into one buffer); returns the bytes written."""
        parts: list[bytes] = []
        for p in payloads:
            parts.append(HEADER.pack(MAGIC, len(p), zlib.crc32(p)))
            parts.append(p)
        size = sum(map(len, parts))
        if not size:
            return 0
        if self._fd >= 0 and self._size and self._size + size > self.segment_bytes:
            self.seal()
        if self._fd < 0:
            self._open()
        done = os.writev(self._fd, parts) if len(parts) <= _IOV_MAX else 0
        if done < size:  # a short write (or too many parts): the rest as one buffer
            view = memoryview(b"".join(parts))[done:]
            while view:
                view = view[os.write(self._fd, view) :]
        self._size += size
        self._dirty = True
        return size

    def fsync(self) -> None:
        if self._fd >= 0 and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self.sync_folder()

    def folder_due(self) -> bool:
        """Whether a segment was created since the folder was last fsynced (cleared: the
        caller fsyncs it, see :func:`sync_folder`)."""
        due = self._dir_dirty
        self._dir_dirty = False
        return due

    def sync_folder(self) -> None:
        if self.folder_due():
            _fsync_dir(self.folder)

    def fsync_handle(self) -> int:
        """A duplicate of the open segment's descriptor when it holds unsynced writes (the
        caller fsyncs and closes it, without holding up writers meanwhile); else -1."""
        if self._fd < 0 or not self._dirty:
            return -1
        self._dirty = False
        return os.dup(self._fd)

    def seal(self) -> Path | None:
        """Close the open segment (fsynced) as ``<id>.seg``; None when none is open."""
        detached = self.detach()
        return None if detached is None else finish_seal(*detached)

    def detach(self) -> tuple[int, Path, Path] | None:
        """Hand over the open segment to be sealed by :func:`finish_seal` (outside the
        writers' lock: the next write opens a new segment meanwhile); None when none is
        open. Returns (descriptor, path, folder)."""
        if self._fd < 0 or self._path is None:
            return None
        detached = (self._fd, self._path, self.folder)
        self._fd = -1
        self._dirty = False
        self._dir_dirty = False  # finish_seal fsyncs the folder
        self._path = None
        self._size = 0
        return detached


def finish_seal(fd: int, path: Path, folder: Path) -> Path:
    """fsync and close a detached open segment, rename it ``<id>.seg``, fsync the folder."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sealed = path.with_suffix(SEALED)
    path.rename(sealed)
    _fsync_dir(folder)
    return sealed
