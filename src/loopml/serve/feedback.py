"""``POST /v1/feedback``: outcomes of served predictions, one item or a batch.

Body: ``{"prediction_id": "...", "label": ...}`` (or ``"reward"``, or both), or
``{"feedback": [item, ...]}``. Answers ``{"received", "inserted", "duplicates"}``; the same
item sent again is a duplicate, not an error. An id this server answered (it is in its log
spool or the prediction log) is known; any other is a 404 naming it, and a malformed item a
400 naming the item and field. Storing runs off the event loop.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from loopml.errors import InvalidInputError
from loopml.feedback import ID_PATTERN, record_feedback
from loopml.serve.http import json_response, loads, read_body

if TYPE_CHECKING:
    from loopml.serve.app import ModelServer

BATCH_KEY = "feedback"


def feedback_items(data: Any) -> list[Any]:
    """The items of a request body (one object, or ``{"feedback": [...]}``)."""
    if isinstance(data, dict) and BATCH_KEY in data:
        extra = sorted(k for k in data if k != BATCH_KEY)
        if extra:
            raise InvalidInputError(
                f"unknown key {extra[0]!r} next to 'feedback' in the request",
                where={"field": extra[0]},
                hint='Send {"feedback": [{"prediction_id": ..., "label": ...}, ...]}',
            )
        items = data[BATCH_KEY]
        if not isinstance(items, list):
            raise InvalidInputError(
                f"'feedback' is a JSON {type(items).__name__}, not a list",
                where={"field": "feedback"},
                hint='Send {"feedback": [{"prediction_id": ..., "label": ...}, ...]}',
            )
        return items
    if isinstance(data, dict):
        return [data]
    raise InvalidInputError(
        f"the request body is a JSON {type(data).__name__}, not an object",
        where={"field": "body"},
        hint='Send {"prediction_id": ..., "label": ...} or {"feedback": [...]}',
    )


async def feedback_endpoint(server: ModelServer, request: Request) -> Response:
    body = await read_body(request, server.max_body_bytes)
    items = feedback_items(loads(body))
    if len(items) > server.max_rows:
        raise InvalidInputError(
            f"{len(items)} feedback items in one request, more than {server.max_rows}",
            where={"field": "feedback"},
            hint="Send them in smaller batches, or use `loopml feedback FILE`",
        )
    logger = server.logger
    seen = getattr(logger, "seen", None)
    ids = {
        i["prediction_id"].lower()
        for i in items
        if isinstance(i, dict)
        and isinstance(i.get("prediction_id"), str)
        and ID_PATTERN.match(i["prediction_id"].lower())
    }
    recent = seen(ids) if callable(seen) else set()
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(
        None, partial(record_feedback, server.ws, items, source="http", recent=recent)
    )
    return json_response(result.to_dict())
