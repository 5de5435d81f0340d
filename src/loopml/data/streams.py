"""Streams as sources: MQTT topics, Redis streams, standard input, a growing JSON Lines file.

Each is a streaming :class:`~loopml.data.sources.Source`: :meth:`poll` returns the records
that arrived (one JSON object per message, entry or line), :meth:`position` says where the
consumer stands, :meth:`committed` acknowledges what the engine recorded. Together with the
engine recording a version and its position in one transaction, a restart neither loses nor
duplicates events:

- **MQTT** (``mqtt://host:1883/topic?client_id=ID``, ``loopml[mqtt]``): a persistent session
  (``clean_session=False``, a stable client id; default derived from host, port and topic),
  QoS 1, and manual acknowledgements: a message is PUBACKed only in :meth:`committed`, after
  the version holding it is recorded, so the broker redelivers whatever a killed run had not
  recorded. The position holds the hashes (topic, message id, payload) of the messages
  recorded but maybe not yet acknowledged; their redelivery after a crash is dropped (and
  acknowledged). The broker's ``max_inflight_messages`` (Mosquitto: 20) bounds how many
  unacknowledged messages one micro-batch collects, so cut micro-batches by time.
  ``mqtts://host:8883/topic`` connects with TLS: the broker's certificate is checked against
  ``ca_file`` (else the system's CAs) and the host name; ``cert_file`` and ``key_file`` give
  a client certificate (options, or ``?ca_file=...`` in the URL).
- **Redis streams** (``redis://host:6379/0?stream=NAME``, ``loopml[redis]``): the position is
  the last entry id recorded; with ``&group=G`` (and ``&consumer=C``) a consumer group is used,
  XACKed in :meth:`committed`, pending entries read again after a restart and entries at or
  below the recorded id dropped. An entry's ``data`` field (``field=``) holds the JSON record;
  an entry without it is read as its fields (text).
- **Standard input** (``-``): JSON Lines until end of input; not resumable.
- **A growing JSON Lines file** (``--follow``): the position is the byte offset after the last
  complete line read, with the file's identity (device, inode) and size; a file replaced
  (rotated) or truncated below the offset is read again from its start. A last line without
  its newline is left until it is complete.

A message, entry or line that is not a JSON object raises an error naming it; nothing of the
micro-batch is recorded. With ``on_error="skip-rows"`` it is skipped instead and kept in
:attr:`rejected` (with the reason) for the engine's quarantine.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from loopml.data.sources import Source
from loopml.errors import InvalidInputError, StoreError
from loopml.stores.registry import redact_uri
from loopml.utils import shorten

ON_ERROR = ("fail", "skip-rows")


class StreamSource(Source):
    """What the stream sources share: JSON parsing, rejected messages, ``read``."""

    format: ClassVar[str] = "stream"
    streaming = True

    def __init__(self, on_error: str = "fail") -> None:
        if on_error not in ON_ERROR:
            raise InvalidInputError(
                f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}",
                where={"field": "on_error"},
                hint="Use --on-error fail (stop at a bad message) or skip-rows",
            )
        self.on_error = on_error
        #: messages skipped with on_error="skip-rows": {"where": ..., "raw": ..., "reason": ...}
        self.rejected: list[dict[str, Any]] = []
        #: True once a bounded stream (standard input) has ended
        self.exhausted = False

    def read(self) -> pa.Table:
        """Everything until the stream is idle for a second (for small, bounded streams)."""
        parts = []
        while True:
            got = self.poll(10_000, 1.0)
            if got is None:
                break
            parts.append(got)
        if not parts:
            raise InvalidInputError(
                f"{self.describe()}: no records arrived",
                where={"source": self.describe()},
                hint="Publish records first, or ingest the stream with --idle-timeout",
            )
        return pa.concat_tables(parts, promote_options="permissive")

    def _record(self, raw: bytes | str, where: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON object in ``raw``; None when skipped (``on_error="skip-rows"``)."""
        try:
            value = json.loads(raw)
            reason = None if isinstance(value, dict) else f"a JSON {_kind(value)}, not an object"
        except (ValueError, UnicodeDecodeError) as exc:
            value, reason = None, f"not JSON: {exc}"
        if reason is None:
            return value  # type: ignore[no-any-return]
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if self.on_error == "skip-rows":
            self.rejected.append({"where": where, "raw": text, "reason": reason})
            return None
        at = ", ".join(f"{k} {v}" for k, v in where.items())
        raise InvalidInputError(
            f"{self.describe()}: {at} is {reason}: {shorten(text.strip(), 80)!r}",
            where={"source": self.describe(), **where},
            hint="Send one JSON object per message, or pass --on-error skip-rows to skip "
            "(and quarantine) such messages",
        )

    @staticmethod
    def _table(records: list[dict[str, Any]], what: str) -> pa.Table | None:
        if not records:
            return None
        try:
            return pa.Table.from_pylist(records)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"{what}: the records do not form a table: {exc}",
                where={"source": what},
                hint="Give each field one JSON type in every message",
            ) from exc


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:24]


def _query(uri: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}


# -- MQTT -------------------------------------------------------------------------------------


class MqttSource(StreamSource):
    """JSON messages of an MQTT topic, QoS 1, acknowledged once recorded."""

    format: ClassVar[str] = "mqtt"

    def __init__(
        self,
        uri: str,
        *,
        client_id: str | None = None,
        on_error: str = "fail",
        connect_timeout: float = 10.0,
        username: str | None = None,
        password_env: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        cert_file: str | os.PathLike[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(on_error)
        parts = urlsplit(uri)
        topic = unquote(parts.path.lstrip("/"))
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("mqtt", "mqtts") or not parts.hostname or not topic:
            raise InvalidInputError(
                f"not an MQTT topic URL: {redact_uri(uri)}",
                where={"source": redact_uri(uri)},
                hint="Write mqtt://host:1883/topic, or mqtts://host:8883/topic for TLS (the "
                "topic may use + and # wildcards; '#' is written %23)",
            )
        self.tls = self.scheme == "mqtts"
        self.host, self.topic = parts.hostname, topic
        self.port = parts.port or (8883 if self.tls else 1883)
        query = _query(uri)
        self.ca_file = _tls_file(ca_file or query.get("ca_file"), "ca_file", uri, self.tls)
        self.cert_file = _tls_file(cert_file or query.get("cert_file"), "cert_file", uri, self.tls)
        self.key_file = _tls_file(key_file or query.get("key_file"), "key_file", uri, self.tls)
        if self.key_file and not self.cert_file:
            raise InvalidInputError(
                f"{redact_uri(uri)}: a key file without its certificate",
                where={"source": redact_uri(uri), "field": "key_file"},
                hint="Give the client certificate too (--cert-file), or leave --key-file out",
            )
        self.client_id = (
            client_id
            or query.get("client_id")
            or (
                "loopml-"
                + hashlib.sha256(f"{self.host}:{self.port}/{topic}".encode()).hexdigest()[:16]
            )
        )
        self.username = username or (unquote(parts.username) if parts.username else None)
        self.password_env = password_env
        self._password = unquote(parts.password) if parts.password else None
        self.connect_timeout = connect_timeout
        self.key = f"{self.scheme}://{self.host}:{self.port}/{topic}#{self.client_id}"
        self._messages: queue.Queue[Any] = queue.Queue()
        self._pending: list[tuple[str, int]] = []  # (hash, mid) returned, not yet acked
        self._skip: set[str] = set()  # recorded before a restart: drop their redelivery
        self._client: Any = None
        self._failure: str | None = None

    def describe(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{self.topic}"

    def resume(self, position: dict[str, Any] | None) -> None:
        if position is not None:
            self._skip = set(position.get("recorded", []))

    def position(self) -> dict[str, Any] | None:
        return {"client_id": self.client_id, "recorded": [h for h, _ in self._pending]}

    def committed(self, position: dict[str, Any]) -> None:
        """PUBACK the messages the recorded version holds, in the order they came."""
        done = set(position.get("recorded", []))
        keep = []
        for digest, mid in self._pending:
            if digest in done:
                self._client.ack(mid, 1)
            else:
                keep.append((digest, mid))
        self._pending = keep

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        self._connect()
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        while len(records) < max_records:
            wait = deadline - time.monotonic() if not records else 0.0
            try:
                msg = (
                    self._messages.get(timeout=max(wait, 0.0))
                    if wait > 0
                    else (self._messages.get_nowait())
                )
            except queue.Empty:
                break
            if self._failure is not None:
                break
            digest = _digest(msg.topic.encode(), str(msg.mid).encode(), msg.payload)
            if digest in self._skip:  # recorded by an earlier run, not acknowledged then
                self._skip.discard(digest)
                self._client.ack(msg.mid, msg.qos)
                continue
            where = {"topic": msg.topic, "message": msg.mid}
            record = self._record(msg.payload, where)
            self._pending.append((digest, msg.mid))
            if record is not None:
                records.append(record)
        self._raise_failure()
        return self._table(records, self.describe())

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _connect(self) -> None:
        if self._client is not None:
            self._raise_failure()
            return
        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise InvalidInputError(
                f"{self.describe()}: paho-mqtt is not installed",
                where={"source": self.describe()},
                hint="pip install 'loopml[mqtt]'",
            ) from exc
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        client.manual_ack_set(True)
        password = self._password
        if self.password_env:
            password = os.environ.get(self.password_env)
        if self.username:
            client.username_pw_set(self.username, password)
        if self.tls:
            self._tls_set(client)
        connected = threading.Event()

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                self._failure = f"the broker refused the connection: {reason}"
            else:
                c.subscribe(self.topic, qos=1)
            connected.set()

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            self._messages.put(msg)

        client.on_connect = on_connect
        client.on_message = on_message
        try:
            client.connect(self.host, self.port, keepalive=30)
        except ssl.SSLError as exc:
            raise StoreError(
                f"{self.describe()}: the TLS handshake failed: {exc}",
                where={"source": self.describe()},
                hint="Give the CA that signed the broker's certificate (--ca-file), check that "
                "the certificate names this host, and give a client certificate and key "
                "(--cert-file, --key-file) if the broker asks for one",
                code="source_unreachable",
            ) from exc
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot reach the MQTT broker {self.host}:{self.port}: {exc}",
                where={"source": self.describe()},
                hint="Check the host and port, and that the broker is running",
                code="source_unreachable",
            ) from exc
        client.loop_start()
        self._client = client
        if not connected.wait(self.connect_timeout):
            self._failure = f"no answer to CONNECT within {self.connect_timeout:g} s"
        self._raise_failure()

    def _tls_set(self, client: Any) -> None:
        """TLS with the broker's certificate checked against ``ca_file`` (else the system's
        CAs) and its host name; a client certificate when given."""
        try:
            client.tls_set(
                ca_certs=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise InvalidInputError(
                f"{self.describe()}: cannot load the TLS files: {exc}",
                where={"source": self.describe(), "field": "ca_file/cert_file/key_file"},
                hint="--ca-file takes a PEM CA certificate, --cert-file a PEM client "
                "certificate and --key-file its PEM private key (not encrypted)",
            ) from exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure = self._failure
            self.close()
            self._failure = None
            raise StoreError(
                f"{self.describe()}: {failure}",
                where={"source": self.describe()},
                hint="Check the broker's address, user name and password (password_env)",
                code="source_unreachable",
            )


def _tls_file(value: str | os.PathLike[str] | None, what: str, uri: str, tls: bool) -> str | None:
    """A TLS file option: an existing file, only for ``mqtts://``."""
    if value is None or value == "":
        return None
    if not tls:
        raise InvalidInputError(
            f"{redact_uri(uri)}: {what} is for TLS connections",
            where={"source": redact_uri(uri), "field": what},
            hint="Write mqtts://host:8883/topic to connect with TLS",
        )
    path = Path(os.fspath(value)).expanduser()
    if not path.is_file():
        raise InvalidInputError(
            f"{redact_uri(uri)}: {what} {os.fspath(value)!r} is not a file",
            where={"source": redact_uri(uri), "field": what, "file": os.fspath(value)},
            hint=f"Give the path of a PEM file as --{what.replace('_', '-')}",
        )
    return str(path)


# -- Redis streams ----------------------------------------------------------------------------


def _entry_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamSource(StreamSource):
    """Entries of a Redis stream (XREAD, or XREADGROUP + XACK with a consumer group)."""

    format: ClassVar[str] = "redis"

    def __init__(
        self,
        uri: str,
        *,
        stream: str | None = None,
        group: str | None = None,
        consumer: str | None = None,
        field: str | None = None,
        on_error: str = "fail",
    ) -> None:
        super().__init__(on_error)
        parts = urlsplit(uri)
        query = _query(uri)
        named = stream or query.get("stream")
        if parts.scheme.lower() not in ("redis", "rediss") or not named:
            raise InvalidInputError(
                f"not a Redis stream URL: {redact_uri(uri)}",
                where={"source": redact_uri(uri)},
                hint="Write redis://host:6379/0?stream=NAME (optionally &group=G&consumer=C)",
            )
        self.stream: str = named
        self.uri = uri
        self.group = group or query.get("group")
        self.consumer = consumer or query.get("consumer") or "loopml"
        self.field = field or query.get("field") or "data"
        base = redact_uri(uri.split("?", 1)[0])
        self.where = f"{base}?stream={self.stream}"
        self.key = f"redis:{base}#{self.stream}" + (f"#group={self.group}" if self.group else "")
        self._last: str = "0-0"  # the last entry id returned
        self._recorded: str | None = None  # the last entry id recorded (resumed)
        self._unacked: list[str] = []
        self._pending_done = False
        self._client: Any = None

    def describe(self) -> str:
        return self.where + (f"&group={self.group}" if self.group else "")

    def resume(self, position: dict[str, Any] | None) -> None:
        if position is not None:
            last = str(position.get("last_id", "0-0"))
            try:
                _entry_id(last)
            except ValueError as exc:
                raise InvalidInputError(
                    f"{self.describe()}: stored position {shorten(position, 60)} is not an "
                    "entry id",
                    where={"source": self.describe()},
                    hint="Ingest into a new dataset name",
                ) from exc
            self._last = self._recorded = last

    def position(self) -> dict[str, Any] | None:
        return {"last_id": self._last}

    def committed(self, position: dict[str, Any]) -> None:
        if self.group and self._unacked:
            upto = _entry_id(str(position.get("last_id", "0-0")))
            done = [i for i in self._unacked if _entry_id(i) <= upto]
            if done:
                self._redis().xack(self.stream, self.group, *done)
            self._unacked = [i for i in self._unacked if _entry_id(i) > upto]

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        import redis

        client = self._redis()
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        try:
            if not self.group:
                got = client.xread({self.stream: self._last}, count=max_records, block=block)
            elif not self._pending_done:  # entries delivered to us before, never acked
                got = client.xreadgroup(
                    self.group, self.consumer, {self.stream: "0"}, count=max_records
                )
                if not got or not got[0][1]:
                    self._pending_done = True
                    return self.poll(max_records, timeout)
            else:
                got = client.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=max_records, block=block
                )
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        records = []
        stale = []
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                if self._recorded is not None and _entry_id(eid) <= _entry_id(self._recorded):
                    stale.append(eid)  # recorded by an earlier run, not acked then
                    continue
                self._last = eid
                if self.group:
                    self._unacked.append(eid)
                record = self._entry(eid, fields or {})
                if record is not None:
                    records.append(record)
        if stale and self.group:
            client.xack(self.stream, self.group, *stale)
        if not records and stale:
            return self.poll(max_records, timeout)
        return self._table(records, self.describe())

    def _entry(self, eid: str, fields: dict[Any, Any]) -> dict[str, Any] | None:
        decoded = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}
        if self.field in decoded:
            return self._record(decoded[self.field], {"entry": eid})
        return {
            k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            for k, v in decoded.items()
        }

    def _redis(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import redis
        except ImportError as exc:
            raise InvalidInputError(
                f"{self.describe()}: redis is not installed",
                where={"source": self.describe()},
                hint="pip install 'loopml[redis]'",
            ) from exc
        url = self.uri.split("?", 1)[0]
        client = redis.Redis.from_url(url, socket_connect_timeout=10)
        try:
            client.ping()
            if self.group:
                try:
                    client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        except redis.RedisError as exc:
            raise self._error(exc) from exc
        self._client = client
        return client

    def _error(self, exc: Exception) -> StoreError:
        return StoreError(
            f"{self.describe()}: {type(exc).__name__}: {exc}",
            where={"source": self.describe()},
            hint="Check the host, port, database number and password of the Redis server",
            code="source_unreachable",
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


# -- standard input ---------------------------------------------------------------------------


class StdinSource(StreamSource):
    """JSON Lines from standard input (or any binary stream), until it ends."""

    format: ClassVar[str] = "stdin"

    def __init__(self, stream: IO[bytes] | None = None, *, on_error: str = "fail") -> None:
        super().__init__(on_error)
        self._stream = stream
        self._lines: queue.Queue[bytes | None] = queue.Queue(maxsize=100_000)
        self._reader: threading.Thread | None = None
        self._line = 0

    def describe(self) -> str:
        return "<stdin>"

    def _start(self) -> None:
        if self._reader is None:
            stream = self._stream if self._stream is not None else sys.stdin.buffer
            fd = _raw_fd(stream) if self._stream is None else None

            def pump() -> None:
                try:
                    if fd is None:
                        for line in stream:
                            self._lines.put(line)
                    else:  # see _raw_fd
                        pending = b""
                        while chunk := os.read(fd, 1 << 16):
                            *lines, pending = (pending + chunk).split(b"\n")
                            for line in lines:
                                self._lines.put(line + b"\n")
                        if pending:
                            self._lines.put(pending)
                finally:
                    self._lines.put(None)

            self._reader = threading.Thread(target=pump, name="loopml-stdin", daemon=True)
            self._reader.start()

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        self._start()
        if self.exhausted:
            time.sleep(min(max(timeout, 0.0), 0.05))
            return None
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        while len(records) < max_records:
            wait = deadline - time.monotonic() if not records else 0.0
            try:
                line = self._lines.get(timeout=wait) if wait > 0 else self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self.exhausted = True
                break
            self._line += 1
            if not line.strip():
                continue
            record = self._record(line, {"line": self._line})
            if record is not None:
                records.append(record)
        return self._table(records, self.describe())


def _raw_fd(stream: Any) -> int | None:
    """The file descriptor under standard input, read with ``os.read`` by the pump thread.

    A daemon thread blocked in, or between, reads of ``sys.stdin.buffer`` holds that
    buffered reader's lock; when the command ends on an error meanwhile, the interpreter's
    shutdown cannot take the lock and aborts the process ("could not acquire lock ... at
    interpreter shutdown, possibly due to daemon threads"), exit -6 instead of 2. Reading
    the descriptor takes no Python-level lock. None where there is no descriptor.
    """
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


# -- a growing JSON Lines file ----------------------------------------------------------------


class FollowSource(StreamSource):
    """New complete lines of a JSON Lines file that grows (``tail -F``)."""

    format: ClassVar[str] = "follow"
    interval = 0.05  # seconds between looks at the file while waiting

    def __init__(self, path: str | os.PathLike[str], *, on_error: str = "fail") -> None:
        super().__init__(on_error)
        self.path = Path(os.fspath(path)).expanduser().absolute()
        self.key = f"follow:{self.path}"
        self._offset = 0
        self._line = 0
        self._identity: tuple[int, int] | None = None
        self._fh: IO[bytes] | None = None
        #: why the file was read again from its start (rotated, truncated), for the log
        self.restarts: list[str] = []

    def describe(self) -> str:
        return str(self.path)

    def resume(self, position: dict[str, Any] | None) -> None:
        if position is None:
            return
        try:
            self._offset = int(position["offset"])
            self._line = int(position.get("line", 0))
            self._identity = (int(position["dev"]), int(position["inode"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{self.path}: stored position {shorten(position, 60)} is not one loopml wrote",
                where={"file": str(self.path)},
                hint="Ingest into a new dataset name",
            ) from exc

    def position(self) -> dict[str, Any] | None:
        if self._identity is None:
            return None
        dev, inode = self._identity
        return {
            "offset": self._offset,
            "line": self._line,
            "dev": dev,
            "inode": inode,
            "size": self._size(),
        }

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return self._offset

    def _open(self) -> IO[bytes] | None:
        """The file, positioned at the offset; read again from 0 if it was replaced or cut."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._fh is None and self._identity is None:
                raise InvalidInputError(
                    f"file not found: {self.path}",
                    where={"file": str(self.path)},
                    hint="Check the path; --follow waits for new lines of an existing file",
                ) from None
            return self._fh  # rotated away, the new one not there yet
        identity = (st.st_dev, st.st_ino)
        if self._identity is not None and identity != self._identity:
            self._restart(f"{self.path} was replaced (rotated): reading the new file")
        elif st.st_size < self._offset:
            self._restart(f"{self.path} was truncated below offset {self._offset}")
        if self._fh is None or self._identity != identity:
            if self._fh is not None:
                self._fh.close()
            self._fh = self.path.open("rb")
            self._identity = identity
        self._fh.seek(self._offset)
        return self._fh

    def _restart(self, why: str) -> None:
        self.restarts.append(why)
        self._offset, self._line = 0, 0
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def poll(self, max_records: int, timeout: float) -> pa.Table | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        records: list[dict[str, Any]] = []
        while True:
            fh = self._open()
            if fh is not None:
                for line in self._complete_lines(fh, max_records - len(records)):
                    self._line += 1
                    self._offset += len(line)
                    if not line.strip():
                        continue
                    record = self._record(line, {"line": self._line})
                    if record is not None:
                        records.append(record)
            if records or len(records) >= max_records or time.monotonic() >= deadline:
                break
            time.sleep(min(self.interval, max(deadline - time.monotonic(), 0.0)))
        return self._table(records, self.describe())

    @staticmethod
    def _complete_lines(fh: IO[bytes], most: int) -> Iterator[bytes]:
        for _ in range(most):
            line = fh.readline()
            if not line.endswith(b"\n"):
                return  # nothing more, or a line still being written
            yield line

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- the scheme factory -----------------------------------------------------------------------


def make(uri: str, format: str | None = None, **options: Any) -> Source:
    """``mqtt://``, ``redis://`` (with ``stream=``), ``-`` (standard input), or else a JSON
    Lines file to follow (the engine asks for that with ``follow=True``)."""
    given = {k: v for k, v in options.items() if v is not None and (k, v) != ("header", True)}
    if format not in (None, "jsonl", "ndjson", "json"):
        raise InvalidInputError(
            f"{redact_uri(uri)}: streams read JSON, not {format!r}",
            where={"source": redact_uri(uri), "field": "format"},
            hint="Leave --format out",
        )
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    factory: Any
    if scheme in ("mqtt", "mqtts"):
        factory = MqttSource
    elif scheme in ("redis", "rediss"):
        factory = RedisStreamSource
    elif uri.strip() == "-":
        return _build(StdinSource, None, given, "standard input")
    else:
        return _build(FollowSource, uri, given, "a followed file")
    return _build(factory, uri, given, scheme)


def _build(cls: Any, uri: str | None, given: dict[str, Any], what: str) -> Source:
    import inspect

    known = set(inspect.signature(cls.__init__).parameters) - {"self", "uri", "path", "stream"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInputError(
            f"option {unknown[0]!r} is not one for {what}",
            where={"source": uri or "-", "field": unknown[0]},
            hint=f"Options for {what}: {', '.join(sorted(known)) or 'none'}",
        )
    return cls(**given) if uri is None else cls(uri, **given)  # type: ignore[no-any-return]
