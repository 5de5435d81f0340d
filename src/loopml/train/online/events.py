"""Labelled events for the online learner, one at a time, each with the position after it.

The learner checkpoints "the model after event *n*" together with "the stream after event
*n*", so every event carries the position that resumes reading right after it:

- **Redis streams** (``redis://host:6379/0?stream=NAME``): the entry id; reading resumes with
  ``XREAD`` after it. An entry's ``data`` field holds the JSON object; an entry without it is
  read as its fields, each value parsed as JSON where it parses (``"1.5"`` is a number).
- **A growing JSON Lines file** (a path): the byte offset after the line, with the file's
  identity (device, inode); a replaced or truncated file is read again from its start
  (:class:`loopml.data.streams.FollowSource`). A last line without its newline waits.
- **MQTT** (``mqtt://host:1883/topic``): MQTT cannot seek. Messages are taken with QoS 1 in a
  persistent session and acknowledged only when a checkpoint holding them is committed, so
  after a crash the broker redelivers what the last checkpoint did not hold; the position
  names the messages committed but perhaps not acknowledged, whose redelivery is dropped.
  What the broker did not keep (a session expired, QoS 0 publishers) cannot be replayed,
  and redelivered messages may come in another order than the first time. The broker
  delivers only ``max_inflight_messages`` (Mosquitto: 20) unacknowledged messages, so the
  learner commits a checkpoint whenever that many wait (:meth:`EventStream.pending`).
- **Feedback** (``feedback:<model>``): outcomes the server received (``POST /v1/feedback``,
  ``loopml feedback``) joined to the logged prediction's inputs, in the order the metadata
  store numbered them; the position is that sequence. A label whose prediction is not in
  the lake yet (the server compacts its spool about once a second) is waited for, then
  dead-lettered after :attr:`FeedbackEvents.grace` seconds; feedback for another model's
  predictions is passed over. Rows are read once they are ``settle`` seconds old, so that
  (on PostgreSQL) a transaction that took a lower number but committed later is not passed.
  Labels are joined by searching the log parts newest first; the parts read last are kept
  (at most :attr:`FeedbackEvents.cache_rows` rows), so memory stays bounded on a long stream.

An entry or line that is not a JSON object comes back as an :class:`Event` with ``error``
set (the learner dead-letters it); reading never stops on one bad event.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from loopml.data.streams import FollowSource, MqttSource, RedisStreamSource, _digest
from loopml.errors import InvalidInputError, NotFoundError, StoreError
from loopml.names import check_name
from loopml.stores.registry import redact_uri
from loopml.utils import shorten, utcnow

if TYPE_CHECKING:
    import queue

    import pyarrow as pa

    from loopml.workspace import Workspace

FEEDBACK = "feedback:"
#: the error code of a stream that is (still) missing or unreachable: retried with backoff
RETRYABLE = ("source_unreachable", "stream_missing")


@dataclass(frozen=True, slots=True)
class Event:
    """One event read: its JSON object (None when it is not one), where it was, the
    position right after it, its raw text, and why it is malformed (None when it is not)."""

    record: dict[str, Any] | None
    where: dict[str, Any]
    position: dict[str, Any]
    raw: str
    error: str | None = None


def _parse(raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("list", "array").replace("str", "string")
        return None, f"a JSON {kind}, not an object"
    return value, None


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


class Batch:
    """Events read at once, for the learner's loop: ``records[i]`` is event *i*'s JSON
    object (None when it is malformed: :meth:`event` says why), :meth:`position` the
    position after it, :meth:`event` the whole :class:`Event` (built only when needed: a
    dead letter, a mini-batch)."""

    __slots__ = ("_events", "finite", "records")

    def __init__(self, events: list[Event]) -> None:
        self._events = events
        #: every float in ``records`` is finite (orjson reads no NaN or infinity)
        self.finite = False
        self.records: list[dict[str, Any] | None] = [
            e.record if e.error is None else None for e in events
        ]

    def __len__(self) -> int:
        return len(self.records)

    def event(self, i: int) -> Event:
        return self._events[i]

    def position(self, i: int) -> dict[str, Any]:
        return self._events[i].position


class RedisBatch(Batch):
    """Entries of one ``XREAD``: their ids and ``data`` values as the server sent them
    (bytes), decoded to objects all at once; the :class:`Event` of an entry is built when
    asked for (most never are)."""

    __slots__ = ("_ids", "_raws", "_special")

    def __init__(
        self,
        ids: list[Any],
        raws: list[Any],
        records: list[dict[str, Any] | None],
        special: dict[int, Event],
    ) -> None:
        self._ids, self._raws, self._special = ids, raws, special
        self.records = records
        self.finite = not special  # entries of other fields are read by json (NaN, Infinity)

    def _eid(self, i: int) -> str:
        eid = self._ids[i]
        return eid.decode() if eid.__class__ is bytes else str(eid)

    def position(self, i: int) -> dict[str, Any]:
        special = self._special.get(i)
        return special.position if special is not None else {"last_id": self._eid(i)}

    def event(self, i: int) -> Event:
        special = self._special.get(i)
        if special is not None:
            return special
        eid, raw = self._eid(i), self._raws[i]
        record = self.records[i]
        error = None
        if record is None:
            record, error = _parse(raw)  # the reason it is not an object
            if error is None:  # a valid object refused by the batch's checks: not here
                error = "not a JSON object"
        return Event(record, {"entry": eid}, {"last_id": eid}, _text(raw), error)


def decode_all(raws: list[Any]) -> list[dict[str, Any] | None]:
    """The JSON object of each of ``raws`` (None for one that is not JSON, or not an
    object), each decoded on its own, so a crafted value cannot spill into the next: one
    list comprehension in the common case where every value parses, an entry-by-entry
    loop only when one does not."""
    loads = orjson.loads
    try:
        records: list[Any] = [loads(raw) for raw in raws]
    except orjson.JSONDecodeError:
        records = []
        for raw in raws:
            try:
                records.append(loads(raw))
            except orjson.JSONDecodeError:
                records.append(None)
    if set(map(type, records)) != {dict}:  # a value that is JSON, not a JSON object
        records = [r if r.__class__ is dict else None for r in records]
    return records


def missing_stream(what: str, hint: str) -> StoreError:
    return StoreError(
        f"{what} does not exist",
        where={"source": what},
        hint=hint,
        code="stream_missing",
    )


class EventStream(ABC):
    """A stream of events with positions; see the module for each kind."""

    #: the stream's identity in checkpoints (no secrets, at most 512 characters)
    stream_key: str
    #: the most events taken but not yet acknowledged (MQTT); the learner commits a
    #: checkpoint when :meth:`pending` reaches it
    pending_limit: int | None = None

    def pending(self) -> int:
        """Events taken but not yet acknowledged."""
        return 0

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def resume(self, position: dict[str, Any] | None) -> None:
        """Read after ``position`` (a checkpoint's), or from the start when None."""

    @abstractmethod
    def read_events(self, most: int, timeout: float) -> list[Event]:
        """Up to ``most`` events, waiting up to ``timeout`` seconds for the first."""

    def read_batch(self, most: int, timeout: float) -> Batch:
        """:meth:`read_events` as a :class:`Batch` (what the learner's loop reads)."""
        return Batch(self.read_events(most, timeout))

    def committed(self, position: dict[str, Any]) -> None:  # noqa: B027 (most need nothing)
        """A checkpoint holding everything up to ``position`` was committed."""

    def close(self) -> None:  # noqa: B027
        """Release connections and files."""


# -- Redis streams ----------------------------------------------------------------------------


class RedisEvents(RedisStreamSource, EventStream):
    """Entries of a Redis stream after a checkpoint's entry id (``XREAD``)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        if self.group:
            raise InvalidInputError(
                f"{self.describe()}: the online learner reads a stream by entry id, not "
                "through a consumer group",
                where={"source": self.describe(), "field": "group"},
                hint="Leave group= out: the checkpoint records the entry id to resume after",
            )
        self.stream_key = self.where
        self._checked = False
        self._raw_client: Any = None  # the client whose XREAD replies are left raw

    def describe(self) -> str:
        return self.where

    def resume(self, position: dict[str, Any] | None) -> None:
        super().resume(position)
        self._recorded = None  # XREAD after the id already skips what the checkpoint holds

    def _xread(self, most: int, timeout: float) -> Any:
        """XREAD's reply after the last entry id: ``[[stream, [[id, [field, value, ...]],
        ...]]]`` as the server sent it (or a dict of it, under RESP3); None when empty."""
        import redis

        client = self._redis()
        try:
            if not self._checked:
                kind = client.type(self.stream)
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                if kind == "none":
                    raise missing_stream(
                        f"Redis stream {self.stream!r} at {self.where}",
                        "Check the stream name; the learner waits for it to be created",
                    )
                if kind != "stream":
                    raise InvalidInputError(
                        f"{self.describe()}: key {self.stream!r} is a Redis {kind}, not a stream",
                        where={"source": self.describe()},
                        hint="Name a stream written with XADD",
                    )
                self._checked = True
            if self._raw_client is not client:
                # XREAD's reply as the server sends it: its entries' fields stay flat
                # [name, value, ...] lists, not parsed into a dict per entry (a third of the
                # read's cost); only this source's own client is changed
                client.set_response_callback("XREAD", _raw_reply)
                self._raw_client = client
            block = max(1, int(timeout * 1000)) if timeout > 0 else None
            got = client.xread({self.stream: self._last}, count=most, block=block)
        except redis.RedisError as exc:
            self._client = None
            raise self._error(exc) from exc
        return got or None

    def read_events(self, most: int, timeout: float) -> list[Event]:
        batch = self.read_batch(most, timeout)
        return [batch.event(i) for i in range(len(batch))]

    def read_batch(self, most: int, timeout: float) -> Batch:
        """The entries after the last id. The ``data`` values are decoded together
        (:func:`decode_all`); an entry of other fields becomes its :class:`Event` here."""
        got = self._xread(most, timeout)
        ids: list[Any] = []
        raws: list[Any] = []
        special: dict[int, Event] = {}
        if got is None:
            return RedisBatch(ids, raws, [], special)
        field = self.field.encode()
        replies = got.values() if isinstance(got, dict) else (pair[1] for pair in got)
        add_id, add_raw = ids.append, raws.append
        for entries in replies:
            for entry_id, fields in entries:
                add_id(entry_id)
                if fields and len(fields) == 2 and fields[0] == field:  # {data: JSON}
                    add_raw(fields[1])
                else:
                    eid = entry_id.decode() if entry_id.__class__ is bytes else str(entry_id)
                    special[len(raws)] = self._event(eid, _pairs(fields))
                    add_raw(b"{}")  # a placeholder: the event above stands for it
        if ids:
            last = ids[-1]
            self._last = last.decode() if last.__class__ is bytes else str(last)
        records = decode_all(raws)
        for i, ev in special.items():
            records[i] = ev.record if ev.error is None else None
        return RedisBatch(ids, raws, records, special)

    def _event(self, eid: str, fields: dict[Any, Any]) -> Event:
        decoded = {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in fields.items()}
        where = {"entry": eid}
        position = {"last_id": eid}
        if self.field in decoded:
            raw = decoded[self.field]
            record, error = _parse(raw)
            return Event(record, where, position, _text(raw), error)
        record = {}
        for name, value in decoded.items():
            text = _text(value)
            try:
                record[name] = json.loads(text)
            except ValueError:
                record[name] = text
        return Event(record, where, position, json.dumps(record, default=str))

    def close(self) -> None:
        RedisStreamSource.close(self)


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


def _pairs(fields: Any) -> dict[Any, Any]:
    """An entry's fields as a dict: a flat ``[name, value, ...]`` list or a mapping."""
    if not fields:
        return {}
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[0::2], fields[1::2], strict=False))


# -- a growing JSON Lines file ----------------------------------------------------------------


class FileEvents(FollowSource, EventStream):
    """Complete lines of a JSON Lines file, after a checkpoint's byte offset."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.stream_key = f"file:{self.path}"[:512]

    def describe(self) -> str:
        return str(self.path)

    def resume(self, position: dict[str, Any] | None) -> None:
        FollowSource.resume(self, position)

    def read_events(self, most: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(timeout, 0.0)
        events: list[Event] = []
        while True:
            try:
                fh = self._open()
            except InvalidInputError as exc:
                raise missing_stream(
                    str(self.path), "Check the path; the learner waits for the file to appear"
                ) from exc
            if fh is not None and self._identity is not None:
                dev, inode = self._identity
                for line in self._complete_lines(fh, most - len(events)):
                    self._line += 1
                    self._offset += len(line)
                    if not line.strip():
                        continue
                    where = {"line": self._line}
                    position = {"offset": self._offset, "line": self._line, "dev": dev}
                    position["inode"] = inode
                    record, error = _parse(line)
                    events.append(Event(record, where, position, _text(line).rstrip("\n"), error))
            if events or time.monotonic() >= deadline:
                return events
            time.sleep(min(self.interval, max(deadline - time.monotonic(), 0.0)))

    def read_batch(self, most: int, timeout: float) -> Batch:
        batch = Batch(self.read_events(most, timeout))
        batch.finite = True  # every line was read by orjson
        return batch

    def close(self) -> None:
        FollowSource.close(self)


# -- MQTT -------------------------------------------------------------------------------------


class MqttEvents(MqttSource, EventStream):
    """Messages of an MQTT topic, acknowledged when a checkpoint holding them is committed."""

    pending_limit = 20  # Mosquitto's default max_inflight_messages

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.stream_key = f"mqtt://{self.host}:{self.port}/{self.topic}#{self.client_id}"[:512]

    def describe(self) -> str:
        return MqttSource.describe(self)

    def resume(self, position: dict[str, Any] | None) -> None:
        MqttSource.resume(self, position)

    def pending(self) -> int:
        return len(self._pending)

    def read_events(self, most: int, timeout: float) -> list[Event]:
        self._connect()
        messages: queue.Queue[Any] = self._messages
        events: list[Event] = []
        deadline = time.monotonic() + max(timeout, 0.0)
        import queue as queue_module

        while len(events) < most:
            wait = deadline - time.monotonic() if not events else 0.0
            try:
                msg = messages.get(timeout=wait) if wait > 0 else messages.get_nowait()
            except queue_module.Empty:
                break
            if self._failure is not None:
                break
            digest = _digest(msg.topic.encode(), str(msg.mid).encode(), msg.payload)
            if digest in self._skip:  # held by the last checkpoint, its ack lost in a crash
                self._skip.discard(digest)
                self._client.ack(msg.mid, msg.qos)
                continue
            self._pending.append((digest, msg.mid))
            position = {"client_id": self.client_id, "recorded": [h for h, _ in self._pending]}
            record, error = _parse(msg.payload)
            where = {"topic": msg.topic, "message": msg.mid}
            events.append(Event(record, where, position, _text(msg.payload), error))
        self._raise_failure()
        return events

    def committed(self, position: dict[str, Any]) -> None:
        MqttSource.committed(self, position)

    def close(self) -> None:
        MqttSource.close(self)


# -- feedback received by the server ----------------------------------------------------------


def _clean(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


class FeedbackEvents(EventStream):
    """Labels from the feedback store joined to their logged predictions' inputs."""

    grace: ClassVar[float] = 300.0  # seconds a label waits for its prediction to be logged
    cache_rows: ClassVar[int] = 50_000  # logged rows kept in memory for the next labels
    settle: ClassVar[float] = 1.0  # seconds before a stored row is read

    def __init__(self, ws: Workspace, model: str, target: str) -> None:
        check_name(model, "model")
        self.ws, self.model, self.target = ws, model, target
        self.stream_key = f"{FEEDBACK}{model}"
        self._after = 0
        #: log parts read lately (this model's whole, others' ids only), the last used last,
        #: at most cache_rows rows in all: the memory is bounded however long the stream
        self._cache: OrderedDict[str, pa.Table] = OrderedDict()
        self._cached_rows = 0
        #: ids of the first labels waiting for their prediction, and the parts searched for
        #: them already (parts are immutable: only new ones are searched again)
        self._absent: set[str] = set()
        self._absent_parts: set[str] = set()
        self._waiting_since: float | None = None

    def describe(self) -> str:
        return f"the feedback of model {self.model}"

    def resume(self, position: dict[str, Any] | None) -> None:
        if position is None:
            return
        after = position.get("after")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInputError(
                f"{self.describe()}: stored position {shorten(position, 60)} is not one loopml "
                "wrote",
                where={"source": self.stream_key},
                hint="Start the learner for another model name",
            )
        self._after = after

    def _part(self, rel: str, mine: bool) -> pa.Table:
        """A log part (normalized; another model's: its ids only), through the cache."""
        table = self._cache.get(rel)
        if table is not None:
            self._cache.move_to_end(rel)
            return table
        from loopml.predictions import normalized

        table = normalized(self.ws.lake.read_table(rel))
        if not mine:
            table = table.select(["prediction_id"])
        self._cache[rel] = table
        self._cached_rows += table.num_rows
        while self._cached_rows > self.cache_rows and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_rows -= dropped.num_rows
        return table

    def _lookup(self, wanted: set[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """The logged inputs of the ids of ``wanted`` that are this model's predictions, and
        the ids that are another model's; an id in neither is not in the log yet. Searches
        the cached parts first, then the others newest first, stopping when all are found."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from loopml.predictions import PREFIX, RESERVED, _newest_first

        inputs: dict[str, dict[str, Any]] = {}
        others: set[str] = set()
        remaining = set(wanted)

        def search(rel: str, mine: bool, ids: set[str]) -> None:
            table = self._part(rel, mine)
            query = pa.array(sorted(ids), pa.string())
            at = pc.index_in(query, value_set=table["prediction_id"])
            hits = [(pid, i) for pid, i in zip(query.to_pylist(), at.to_pylist(), strict=True)]
            hits = [(pid, i) for pid, i in hits if i is not None]
            if not hits:
                return
            remaining.difference_update(pid for pid, _ in hits)
            if not mine:
                others.update(pid for pid, _ in hits)
                return
            names = [
                c
                for c in table.column_names
                if c not in RESERVED and not (c.startswith("feature_") and c[8:] in RESERVED)
            ]
            renamed = {f"feature_{n}": n for n in RESERVED if f"feature_{n}" in table.column_names}
            rows = table.take([i for _, i in hits]).select([*names, *renamed]).to_pylist()
            for (pid, _), row in zip(hits, rows, strict=True):
                inputs[pid] = {renamed.get(c, c): _clean(v) for c, v in row.items()}

        for rel in reversed(list(self._cache)):  # the parts used last first
            if not remaining:
                break
            search(rel, rel.split("/")[1] == self.model, remaining)
        if remaining:
            parts = []
            for path in self.ws.lake.list(f"{PREFIX}/"):
                rel = path if path.startswith(f"{PREFIX}/") else f"{PREFIX}/{path.lstrip('/')}"
                if rel.endswith(".parquet") and not rel.rsplit("/", 1)[-1].startswith("."):
                    parts.append(rel)
            parts.sort(key=_newest_first, reverse=True)
            mine = [p for p in parts if p.split("/")[1] == self.model]
            for rel in [*mine, *(p for p in parts if p.split("/")[1] != self.model)]:
                if not remaining:
                    break
                if rel in self._cache:
                    continue  # searched above
                ids = remaining if rel not in self._absent_parts else remaining - self._absent
                if ids:
                    search(rel, rel.split("/")[1] == self.model, ids)
            if remaining:  # waited for: the parts searched need not be searched again
                if not remaining <= self._absent:
                    self._absent_parts = set()
                self._absent = remaining
                self._absent_parts.update(parts)
        if not remaining:
            self._absent, self._absent_parts = set(), set()
        return inputs, others

    def read_events(self, most: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            events = self._read_once(most)
            if events or time.monotonic() >= deadline:
                return events
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))

    def _read_once(self, most: int) -> list[Event]:
        until = utcnow() - timedelta(seconds=self.settle)
        rows = self.ws.metadata.list_feedback_after(self._after, most, until=until)
        if not rows:
            return []
        found, others = self._lookup({fb.prediction_id for _, fb in rows})
        events = []
        for seq, fb in rows:
            pid = fb.prediction_id
            where = {"feedback": seq, "prediction_id": pid}
            position = {"after": seq}
            raw = json.dumps({"prediction_id": pid, "label": fb.label}, default=str)
            if pid in others:
                self._after = seq
                continue
            inputs = found.get(pid)
            if inputs is None:
                now = time.monotonic()
                if self._waiting_since is None:
                    self._waiting_since = now
                if now - self._waiting_since < self.grace:
                    break  # keep the order: wait for the log to catch up
                error = f"prediction {pid} is not in the prediction log after {self.grace:g} s"
                events.append(Event(None, where, position, raw, error))
            elif fb.label is None:  # a reward only: nothing to learn from
                events.append(Event(dict(inputs), where, position, raw))
            else:
                events.append(Event({**inputs, self.target: fb.label}, where, position, raw))
            self._waiting_since = None
            self._after = seq
        return events


# -- the factory ------------------------------------------------------------------------------


def open_stream(uri: str, ws: Workspace, *, target: str) -> EventStream:
    """The event stream ``uri`` names: ``redis://...?stream=``, ``mqtt://...``,
    ``feedback:<model>``, or else a JSON Lines file (relative to the current folder)."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(
            f"online.stream {uri!r} is empty",
            where={"field": "online.stream"},
            hint="Name a stream: redis://host:6379/0?stream=NAME, mqtt://host:1883/topic, "
            "feedback:<model> or a JSON Lines file",
        )
    if uri.startswith(FEEDBACK):
        return FeedbackEvents(ws, uri[len(FEEDBACK) :], target)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("redis", "rediss"):
        return RedisEvents(uri)
    if scheme == "mqtt":
        return MqttEvents(uri)
    if scheme in ("", "file"):
        return FileEvents(uri[len("file://") :] if scheme == "file" else uri)
    raise NotFoundError(
        f"online.stream {redact_uri(uri)}: no event stream for the scheme {scheme!r}",
        where={"field": "online.stream"},
        hint="Known: redis://, rediss://, mqtt://, feedback:<model>, file:// or a file path",
    )


# -- dead letters -----------------------------------------------------------------------------


class DeadLetters:
    """Where events the learner cannot use go, each with its reason: a JSON Lines file
    (default ``<workspace>/online/<model>/dead_letters.jsonl``) or a Redis stream
    (``redis://host:6379/0?stream=NAME``, one entry per event, its ``data`` field the JSON).

    Each letter is ``{"id", "at", "stream", "where", "reason", "raw"}``; ``id`` is the sha256
    of the stream and the event's place in it, so an event read again after a crash (past
    the last checkpoint) is dead-lettered again under the same id: delivery is at least
    once, and readers drop repeated ids.
    """

    def __init__(self, ws: Workspace, model: str, uri: str | None) -> None:
        from pathlib import Path

        self.count = 0
        self._dirty = False
        self._fh: Any = None
        self._redis: Any = None
        if uri is None:
            self.path: Path | None = Path(ws.root) / "online" / model / "dead_letters.jsonl"
            self.target = str(self.path)
        elif uri.split("://", 1)[0].lower() in ("redis", "rediss"):
            self.path = None
            self._source = RedisStreamSource(uri)  # parses and checks the URL
            self.target = self._source.describe()
        else:
            self.path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
            self.target = str(self.path)

    def add(self, stream: str, event: Event, reason: str) -> dict[str, Any]:
        import hashlib

        place = json.dumps([stream, event.where], sort_keys=True, default=str)
        letter = {
            "id": hashlib.sha256(place.encode()).hexdigest()[:32],
            "at": utcnow().isoformat(),
            "stream": stream,
            "where": event.where,
            "reason": reason,
            "raw": event.raw,
        }
        line = json.dumps(letter, ensure_ascii=False, default=str)
        if self.path is None:
            try:
                self._source._redis().xadd(self._source.stream, {"data": line})
            except Exception as exc:  # redis errors: reported, the letter is not lost silently
                raise StoreError(
                    f"dead-letter stream {self.target}: cannot add a letter: {exc}",
                    where={"dead_letter": self.target},
                    hint="Check that the Redis server of online.dead_letter is reachable",
                ) from exc
        else:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(line + "\n")
            self._fh.flush()
            self._dirty = True
        self.count += 1
        return letter

    def sync(self) -> None:
        """Make the letters written so far durable (before a checkpoint is committed)."""
        if self._fh is not None and self._dirty:
            import os

            os.fsync(self._fh.fileno())
            self._dirty = False

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
        if self.path is None:
            self._source.close()
