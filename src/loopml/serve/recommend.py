"""``POST /v1/models/{name}:recommend``: the top-k items of a recommender version for a user.

Body: ``{"user": ID, "k": 10, "exclude_seen": true}`` (``k`` and ``exclude_seen`` optional).
Answers ``{"model", "version", "user", "items": [...], "scores": [...], "known_user",
"fallback"}``: a user never seen in training gets the most popular items, ``scores`` null
and ``"fallback": "popular"``; a known user's ``fallback`` is null. A read, like
``:predict``: no token needed. A body that is not that object, a ``k`` that is not a whole
number in 1..``MAX_K``, a user that is not a string or a whole number, or a version that is
not a recommender is a 422 JSON error naming the field. Scoring runs off the event loop.
"""

from __future__ import annotations

import asyncio
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from loopml.errors import InvalidInputError
from loopml.serve.http import json_response, loads, read_body

if TYPE_CHECKING:
    from loopml.serve.app import ModelServer

FLAVOR = "recommender"
KEYS = ("user", "k", "exclude_seen")
MAX_K = 1000
ENDPOINT = "v1_recommend"
HINT = 'Send {"user": ID, "k": 10, "exclude_seen": true}'


def parse_request(data: Any) -> tuple[Any, int, bool]:
    """``(user, k, exclude_seen)`` of a request body; InvalidInputError naming the field."""
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"the request body is a JSON {type(data).__name__}, not an object",
            where={"field": "body"},
            hint=HINT,
        )
    for key in data:
        if key not in KEYS:
            raise InvalidInputError(
                f"unknown key {str(key)[:60]!r} in the request",
                where={"field": str(key)[:60]},
                hint=HINT,
            )
    if "user" not in data:
        raise InvalidInputError("the request has no user", where={"field": "user"}, hint=HINT)
    user = data["user"]
    if isinstance(user, bool) or not isinstance(user, str | int):
        raise InvalidInputError(
            f"user is a JSON {_json_type(user)}, not a string or a whole number",
            where={"field": "user"},
            hint='Send the user\'s id as in training, e.g. "user": 196',
        )
    k = data.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidInputError(
            f"k is {repr(k)[:40]}, not a whole number from 1 to {MAX_K}",
            where={"field": "k"},
            hint='Send e.g. "k": 10',
        )
    exclude = data.get("exclude_seen", True)
    if not isinstance(exclude, bool):
        raise InvalidInputError(
            f"exclude_seen is a JSON {_json_type(exclude)}, not true or false",
            where={"field": "exclude_seen"},
            hint='Send "exclude_seen": true to leave out the items the user saw in training',
        )
    return user, k, exclude


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


async def recommend_endpoint(server: ModelServer, request: Request) -> Response:
    t0 = perf_counter()
    from loopml.serve.app import split_ref

    name, version = split_ref(request.path_params["name"])
    runtime = server._runtime(name, version, ENDPOINT, t0, request.headers.get("x-loopml-key"))
    try:
        body = await read_body(request, server.max_body_bytes)
        user, k, exclude = parse_request(loads(body))
        bundle = runtime.loaded.bundle
        if bundle.flavor != FLAVOR:
            raise InvalidInputError(
                f"{name}@{runtime.version} is a {bundle.flavor} model, not a recommender",
                where={"model": name, "version": runtime.version},
                hint=f"Ask /v1/models/{name}:predict, or serve a recommender version",
            )
        loop = asyncio.get_running_loop()
        rec = await loop.run_in_executor(
            server.executor, partial(bundle.estimator.recommend, user, k, exclude_seen=exclude)
        )
    except Exception as exc:
        server._count_error(name, runtime.version_text, ENDPOINT, exc, t0)
        raise
    server._count(name, runtime.version_text, ENDPOINT, 200, t0)
    content = {
        "model": name,
        "version": runtime.version,
        "user": user,
        "items": [_plain(i) for i in rec.items],
        "scores": rec.scores,
        "known_user": rec.known_user,
        "fallback": None if rec.known_user else "popular",
        "reason": rec.reason,
    }
    response = json_response(content)
    response.headers.update(runtime.version_header)
    return response


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
