"""The lake and the artifact store on fsspec: a local folder or an S3 bucket prefix.

A :class:`Location` is where a store's files lie (a filesystem and a root) and how a file is
written atomically there: temporary name, fsync and rename on local disks; one PUT on S3,
which is atomic already. :class:`FsspecLake` and :class:`FsspecArtifactStore` hold all the
logic once; ``FileLake``, ``S3Lake``, ``FileArtifactStore`` and ``S3ArtifactStore`` only pick
the location from the URI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.errors import (
    ConfigError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StoreError,
)
from loopml.settings import Settings
from loopml.stores.base import ArtifactStore, Lake
from loopml.utils import atomic_write_bytes, sha256_bytes

_PATH_HINT = (
    "Use a relative path of '/'-separated names such as datasets/iris/v=1/part-0.parquet: "
    "no '..' or '.', no leading '/', no '\\', no empty parts"
)


def check_path(path: object, *, allow_root: bool = False, what: str = "path") -> str:
    """``path`` without a trailing ``/`` if it is a safe relative path, else InvalidInputError.

    ``allow_root`` accepts ``""`` (the store's root), for listings and URLs.
    """
    reason = None
    if not isinstance(path, str):
        reason = f"expected a string, got {type(path).__name__}"
    else:
        rel = path[:-1] if path.endswith("/") and path != "/" else path
        if rel == "" and allow_root:
            return ""
        if rel == "":
            reason = "it is empty"
        elif rel.startswith("/"):
            reason = "absolute paths are not allowed"
        elif "\\" in rel:
            reason = "backslashes are not allowed"
        elif any(ord(c) < 32 for c in rel):
            reason = "control characters are not allowed"
        else:
            for part in rel.split("/"):
                if part in ("", ".", ".."):
                    reason = "'..', '.' and empty parts are not allowed"
                    break
        if reason is None:
            return rel
    raise InvalidInputError(
        f"invalid {what} {path!r}: {reason}", where={what: path}, hint=_PATH_HINT
    )


def _is_temporary(name: str) -> bool:
    """Files in flight (``loopml.utils.atomic_write_bytes``): hidden and ending in ``.tmp``."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") and base.endswith(".tmp")


# -- locations --------------------------------------------------------------------------------


class Location:
    """A filesystem, the root the store lives under, and how to write there atomically."""

    scheme = ""
    hint = ""

    def __init__(self, uri: str, fs: Any, root: str) -> None:
        self.uri = uri
        self.fs = fs
        self.root = root.rstrip("/")

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def relative(self, full: str) -> str:
        return full[len(self.root) + 1 :] if full.startswith(self.root + "/") else full

    def url(self, full: str) -> str:
        raise NotImplementedError

    def put(self, full: str, data: bytes) -> None:
        raise NotImplementedError

    def errors(self) -> tuple[type[BaseException], ...]:
        return (OSError,)

    @contextmanager
    def guard(self, what: str, full: str, *, reading: bool = True) -> Iterator[None]:
        """Translate the filesystem's errors: a missing file -> NotFoundError when ``reading``,
        anything else -> StoreError with a hint."""
        missing = (FileNotFoundError, IsADirectoryError, NotADirectoryError) if reading else ()
        try:
            yield
        except missing as exc:
            raise NotFoundError(
                f"nothing to {what} at {self.url(full)}",
                where={"url": self.url(full)},
                hint="Check the path; list what is stored with the lake's list()",
            ) from exc
        except PermissionError as exc:
            raise StoreError(
                f"permission denied to {what} {self.url(full)}: {exc}",
                where={"url": self.url(full)},
                hint=self.hint,
            ) from exc
        except self.errors() as exc:
            raise StoreError(
                f"could not {what} {self.url(full)}: {type(exc).__name__}: {exc}",
                where={"url": self.url(full)},
                hint=self.hint,
            ) from exc


class LocalLocation(Location):
    """A folder on a local disk: ``file:///abs/path`` or ``/abs/path``."""

    scheme = "file"
    hint = "Check that the folder exists, is writable and that the disk is not full"

    def __init__(self, uri: str) -> None:
        import fsspec

        parts = urlsplit(uri)
        if parts.scheme.lower() == "file":
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(
                    f"file URI {uri!r} names a host ({parts.netloc!r})",
                    where={"uri": uri},
                    hint="Write file:///absolute/path (three slashes), or the absolute path",
                )
            path = unquote(parts.path)
        else:
            path = uri
        if not os.path.isabs(path):
            raise ConfigError(
                f"file URI {uri!r} is not an absolute path",
                where={"uri": uri},
                hint="Write file:///absolute/path (three slashes), or the absolute path",
            )
        root = os.path.normpath(path)
        super().__init__(uri, fsspec.filesystem("file"), root)
        with self.guard("create the folder", root, reading=False):
            os.makedirs(root, exist_ok=True)

    def url(self, full: str) -> str:
        # like Path.as_uri(), but leaves the '=' of partition folders (v=1, date=...) readable
        return "file://" + quote(full, safe="/=:@,+-._~")

    def put(self, full: str, data: bytes) -> None:
        atomic_write_bytes(Path(full), data)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3Location(Location):
    """A bucket and prefix on S3 or an S3-compatible server: ``s3://bucket/prefix``.

    Credentials come from the usual AWS variables and files; ``settings.s3_endpoint_url``
    (``LOOPML_S3_ENDPOINT_URL``) points at MinIO, moto or another server. A missing bucket is
    created.
    """

    scheme = "s3"
    hint = (
        "Check the S3 endpoint (LOOPML_S3_ENDPOINT_URL), the credentials "
        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and that the bucket is reachable"
    )

    def __init__(self, uri: str, settings: Settings) -> None:
        import s3fs

        parts = urlsplit(uri)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"S3 URI {uri!r} has no valid bucket name ({bucket!r})",
                where={"uri": uri},
                hint="Write s3://bucket/prefix; bucket names use 3-63 lower-case letters, "
                "digits, '.' and '-'",
            )
        if prefix:
            try:
                check_path(prefix, what="prefix")
            except InvalidInputError as exc:
                raise ConfigError(exc.message, where={"uri": uri}, hint=exc.hint) from exc
        endpoint = settings.s3_endpoint_url or None
        fs = s3fs.S3FileSystem(
            client_kwargs={"endpoint_url": endpoint} if endpoint else {},
            config_kwargs={
                "connect_timeout": 5,
                "read_timeout": 60,
                "retries": {"total_max_attempts": 2, "mode": "standard"},  # s3fs retries too
            },
            use_listings_cache=False,  # other processes write too
            skip_instance_cache=True,
        )
        super().__init__(uri, fs, f"{bucket}/{prefix}" if prefix else bucket)
        self.endpoint = endpoint
        self._ensure_bucket(bucket)

    def _ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` when it does not exist; fail early when S3 cannot be reached."""
        with self.guard("open the bucket", bucket, reading=False):
            try:
                self.fs.call_s3("head_bucket", Bucket=bucket)
            except FileNotFoundError:
                try:
                    self.fs.mkdir(bucket)
                except FileExistsError:
                    pass  # created meanwhile
            except PermissionError:
                pass  # may still hold objects we are allowed to use; operations will tell

    def url(self, full: str) -> str:
        return f"s3://{full}"

    def put(self, full: str, data: bytes) -> None:
        self.fs.pipe_file(full, data)  # one PUT: readers see the old object or the new one

    def errors(self) -> tuple[type[BaseException], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (OSError, BotoCoreError, ClientError)


# -- the lake ---------------------------------------------------------------------------------


class FsspecLake(Lake):
    """Tables (Parquet) and files under a :class:`Location`."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.uri = location.uri
        self.fs = location.fs

    def write_table(
        self,
        path: str,
        table: pa.Table,
        *,
        dictionary: Sequence[str] | None = None,
        statistics: Sequence[str] | None = None,
    ) -> str:
        if not isinstance(table, pa.Table):
            raise InvalidInputError(
                f"write_table needs a pyarrow.Table, got {type(table).__name__}",
                where={"path": path},
                hint="Convert a DataFrame with pyarrow.Table.from_pandas(frame)",
            )
        sink = pa.BufferOutputStream()
        # dictionary pages only for text: on floats and unique ids they cost 3-7x the write
        # time and save nothing
        text = (
            [
                f.name
                for f in table.schema
                if pa.types.is_string(f.type)
                or pa.types.is_large_string(f.type)
                or pa.types.is_dictionary(f.type)
            ]
            if dictionary is None
            else list(dictionary)
        )
        stats: bool | list[str] = True if statistics is None else list(statistics)
        pq.write_table(table, sink, use_dictionary=text, write_statistics=stats)
        return self.write_bytes(path, sink.getvalue().to_pybytes())

    def read_table(self, path: str) -> pa.Table:
        full = self.location.full(check_path(path))
        with self.location.guard("read", full):
            found = self.fs.find(full)
        single = found == [full]  # the path is a file
        files = sorted(f for f in found if single or self._is_part(f))
        if not files:
            raise NotFoundError(
                f"no Parquet file at or under {self.url(path)}",
                where={"url": self.url(path)},
                hint="Check the path; a folder is read when it holds *.parquet files",
            )
        tables = []
        for f in files:
            with self.location.guard("read", f):
                data = self.fs.cat_file(f)
            try:
                tables.append(pq.read_table(pa.BufferReader(data)))
            except (pa.ArrowInvalid, OSError) as exc:
                raise InvalidInputError(
                    f"{self.location.url(f)} is not a readable Parquet file: {exc}",
                    where={"url": self.location.url(f)},
                    hint="Rewrite it with write_table, or remove it from the folder",
                ) from exc
        if len(tables) == 1:
            return tables[0]
        try:
            return pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"the Parquet files under {self.url(path)} have incompatible schemas: {exc}",
                where={"url": self.url(path)},
                hint="Columns may be added or missing between files, but a column must keep "
                "its type; read the files one by one, or rewrite them with one schema",
            ) from exc

    @staticmethod
    def _is_part(full: str) -> bool:
        base = full.rsplit("/", 1)[-1]
        return base.endswith(".parquet") and not base.startswith((".", "_"))

    def write_bytes(self, path: str, data: bytes) -> str:
        full = self.location.full(check_path(path))
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInputError(
                f"write_bytes needs bytes, got {type(data).__name__}",
                where={"path": path},
                hint="Encode text first, e.g. text.encode()",
            )
        with self.location.guard("write", full, reading=False):
            self.location.put(full, bytes(data))
        return self.location.url(full)

    def read_bytes(self, path: str) -> bytes:
        full = self.location.full(check_path(path))
        with self.location.guard("read", full):
            return bytes(self.fs.cat_file(full))

    def exists(self, path: str) -> bool:
        full = self.location.full(check_path(path))
        with self.location.guard("look up", full):
            return bool(self.fs.exists(full))

    def list(self, prefix: str = "") -> list[str]:
        full = self.location.full(check_path(prefix, allow_root=True, what="prefix"))
        with self.location.guard("list", full):
            found = self.fs.find(full)
        rels = (self.location.relative(f) for f in found)
        return sorted(r for r in rels if not _is_temporary(r))

    def delete(self, path: str) -> None:
        full = self.location.full(check_path(path))
        try:
            with self.location.guard("delete", full):
                self.fs.rm(full, recursive=True)
        except NotFoundError:
            pass

    def url(self, path: str = "") -> str:
        return self.location.url(self.location.full(check_path(path, allow_root=True)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class FileLake(FsspecLake):
    """The lake in a local folder (``file:///...``)."""

    def __init__(self, uri: str, settings: Settings | None = None) -> None:
        super().__init__(LocalLocation(uri))


class S3Lake(FsspecLake):
    """The lake under an S3 bucket prefix (``s3://bucket/prefix``)."""

    def __init__(self, uri: str, settings: Settings) -> None:
        super().__init__(S3Location(uri, settings))


# -- artifacts --------------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: object) -> str:
    """``sha256`` in lower-case hex, or InvalidInputError (the whole text must match)."""
    if isinstance(sha256, str) and _SHA256.fullmatch(sha256.lower()):
        return sha256.lower()
    raise InvalidInputError(
        f"invalid artifact sha256 {sha256!r}",
        where={"artifact": sha256},
        hint="An artifact is named by the 64 hex digits of its sha256",
    )


class FsspecArtifactStore(ArtifactStore):
    """Immutable blobs at ``sha256/<first 2 hex>/<hex>`` under a :class:`Location`."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.uri = location.uri
        self.fs = location.fs

    def _full(self, sha256: str) -> str:
        sha = check_sha256(sha256)
        return self.location.full(f"sha256/{sha[:2]}/{sha}")

    def put(self, data: bytes) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInputError(
                f"put needs bytes, got {type(data).__name__}",
                hint="Serialise the object to bytes first",
            )
        data = bytes(data)
        sha = sha256_bytes(data)
        full = self._full(sha)
        with self.location.guard("write", full, reading=False):
            # written even when present: a damaged copy is replaced, atomically
            self.location.put(full, data)
        return sha

    def get(self, sha256: str) -> bytes:
        full = self._full(sha256)
        try:
            with self.location.guard("read", full):
                data = bytes(self.fs.cat_file(full))
        except NotFoundError as exc:
            raise NotFoundError(
                f"no artifact {sha256} in {self.uri}",
                where={"artifact": sha256, "url": self.location.url(full)},
                hint="It was never stored here, or was removed; check the artifact store URI "
                "of this workspace",
            ) from exc
        actual = sha256_bytes(data)
        if actual != check_sha256(sha256):
            raise IntegrityError(
                f"artifact {sha256} is corrupted: its content hashes to {actual}",
                where={"artifact": sha256, "url": self.location.url(full)},
                hint="The file was changed after it was stored; store it again (re-register "
                "the model or re-run the step that produced it)",
            )
        return data

    def exists(self, sha256: str) -> bool:
        full = self._full(sha256)
        with self.location.guard("look up", full):
            return bool(self.fs.exists(full))

    def url(self, sha256: str) -> str:
        return self.location.url(self._full(sha256))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class FileArtifactStore(FsspecArtifactStore):
    """Artifacts in a local folder (``file:///...``)."""

    def __init__(self, uri: str, settings: Settings | None = None) -> None:
        super().__init__(LocalLocation(uri))


class S3ArtifactStore(FsspecArtifactStore):
    """Artifacts under an S3 bucket prefix (``s3://bucket/prefix``)."""

    def __init__(self, uri: str, settings: Settings) -> None:
        super().__init__(S3Location(uri, settings))


__all__ = [
    "FileArtifactStore",
    "FileLake",
    "FsspecArtifactStore",
    "FsspecLake",
    "LocalLocation",
    "Location",
    "S3ArtifactStore",
    "S3Lake",
    "S3Location",
    "check_path",
    "check_sha256",
]
