"""Checkpoints of an online learner: state and stream position, committed together.

A checkpoint is written in two steps, in this order:

1. one document goes to the artifact store, which writes it atomically (temporary name,
   fsync, rename) under its sha256 — a crash leaves at most an unreferenced blob. It holds
   the learner's state (:meth:`OnlineLearner.state_bytes`, byte for byte) and the loop's own
   state (the prequential metrics, the drift detector, the kinds of the fields seen) as
   canonical JSON, framed as::

       {"format": "loopml.online-checkpoint", "learner": <bytes>, "loop": <bytes>}\\n
       <learner state bytes><loop state bytes>

   (the header's numbers are the lengths of the two parts);
2. one metadata transaction inserts the row naming the document, the learner's checksum and
   the position after the last event learned (:meth:`MetadataStore.add_online_checkpoint`).

Until the row is committed the checkpoint does not exist; once it is, its document does. On
start the learner loads the last row's document (checked against its sha256 by the artifact
store, the learner's part against the row's checksum) and reads the stream after its
position, so no event is learned twice or skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopml.errors import IntegrityError
from loopml.stores.records import OnlineCheckpoint
from loopml.utils import utcnow

if TYPE_CHECKING:
    from loopml.workspace import Workspace

FORMAT = "loopml.online-checkpoint"


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no spaces): same value, same bytes."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


def canonical_parts(parts: dict[str, Any], encoded: dict[str, Any]) -> bytes:
    """Canonical JSON of ``{**parts, **encoded}``: ``encoded`` holds trees written by
    :func:`loopml.registry.flavors.river_state.encode` (every float JSON cannot spell is a
    ``$float`` node), serialised by orjson (ten times faster, the same canonical bytes);
    ``parts`` by the standard library, which keeps a stray NaN a NaN."""
    import orjson

    keys = sorted({*parts, *encoded})
    pieces = []
    for key in keys:
        if key in encoded:
            value = orjson.dumps(encoded[key], option=orjson.OPT_SORT_KEYS)
        else:
            value = canonical(parts[key])
        pieces.append(canonical(key) + b":" + value)
    return b"{" + b",".join(pieces) + b"}"


def pack(state: bytes, loop: dict[str, Any], encoded: dict[str, Any] | None = None) -> bytes:
    """The checkpoint document of a learner's state and the loop's state (``encoded``: the
    parts of the loop's state that are ``river_state`` trees)."""
    rest = canonical_parts(loop, encoded or {})
    header = canonical({"format": FORMAT, "learner": len(state), "loop": len(rest)})
    return header + b"\n" + state + rest


def unpack(data: bytes, what: str) -> tuple[bytes, dict[str, Any]]:
    """The learner's state bytes and the loop's state of a checkpoint document."""
    head, _, body = data.partition(b"\n")
    try:
        header = json.loads(head)
        n_state, n_loop = int(header["learner"]), int(header["loop"])
        if header.get("format") != FORMAT or n_state + n_loop != len(body):
            raise ValueError(f"format {header.get('format')!r}, {len(body)} bytes")
        loop = json.loads(body[n_state:])
        if not isinstance(loop, dict):
            raise ValueError("the loop's state is not a mapping")
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{what}: not a checkpoint document loopml wrote: {exc}"[:300],
            where={"checkpoint": what},
            hint="Restore the artifact store, or learn again under a new online.model name",
        ) from exc
    return body[:n_state], loop


@dataclass(frozen=True)
class Loaded:
    """A checkpoint read back: its row, the learner's state bytes and the loop's state."""

    checkpoint: OnlineCheckpoint
    state: bytes
    loop: dict[str, Any]


class Checkpoints:
    """The checkpoints of model ``name`` learning from the stream ``stream`` (its key)."""

    def __init__(self, ws: Workspace, name: str, stream: str) -> None:
        self.ws, self.name, self.stream = ws, name, stream
        #: milliseconds each commit took (document written + row committed)
        self.timings_ms: list[float] = []

    def latest(self) -> OnlineCheckpoint | None:
        return self.ws.metadata.latest_online_checkpoint(self.name, self.stream)

    def load(self, cp: OnlineCheckpoint) -> Loaded:
        """The document of ``cp``; IntegrityError when it is missing, altered or not one."""
        what = f"checkpoint {cp.seq} of {cp.name}"
        state, loop = unpack(self.ws.artifacts.get(cp.artifact_sha256), what)
        if hashlib.sha256(state).hexdigest() != cp.checksum:
            raise IntegrityError(
                f"{what}: the learner's state does not match the checksum recorded with it",
                where={"checkpoint": what},
                hint="Restore the artifact store, or learn again under a new online.model name",
            )
        return Loaded(cp, state, loop)

    def commit(
        self,
        *,
        seq: int,
        state: bytes,
        loop: dict[str, Any],
        encoded: dict[str, Any] | None = None,
        position: dict[str, Any],
        events: int,
        learned: int,
        run_id: str,
        metrics: dict[str, Any],
        steps: Sequence[tuple[str, int, float | None]] = (),
    ) -> OnlineCheckpoint:
        """Write the document, then commit the row with ``steps`` (``(key, step, value)``
        rows of the run: the windowed metrics since the last checkpoint) in one transaction
        (ConflictError when ``seq`` is taken: then no step is logged either)."""
        started = time.perf_counter()
        sha = self.ws.artifacts.put(pack(state, loop, encoded))
        cp = OnlineCheckpoint(
            name=self.name,
            stream=self.stream,
            seq=seq,
            artifact_sha256=sha,
            checksum=hashlib.sha256(state).hexdigest(),
            position=position,
            events=events,
            learned=learned,
            run_id=run_id,
            created_at=utcnow(),
            metrics=metrics,
        )
        stored = self.ws.metadata.add_online_checkpoint(cp, steps)
        self.timings_ms.append((time.perf_counter() - started) * 1000)
        return stored
