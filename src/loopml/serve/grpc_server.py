"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` next to the HTTP app.

A ``grpc.aio`` server in the HTTP server's process and event loop (``loopml serve
--grpc-port``), answering ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata,
ModelInfer and RepositoryIndex as KServe's ``grpc_predict_v2.proto`` and Triton define them, so
``tritonclient.grpc`` works as ``tritonclient.http`` does. Every prediction goes through
:meth:`ModelServer.infer` (validation, admission, batching, the prediction log, metrics), the
tensors through the same V2 rules as ``/v2/models/{name}/infer`` (:mod:`loopml.serve.v2`): one
tensor per feature, or one ``[N, F]`` tensor for an all-numeric model, given as typed
``contents`` or as ``raw_input_contents``. A request with raw inputs gets raw outputs
(``raw_output_contents``, as Triton answers), one with typed contents typed outputs.

Errors carry the HTTP answer's message as their details and its whole JSON body in the
``loopml-error-bin`` trailing metadata: a bad request is INVALID_ARGUMENT, an unknown model or
version NOT_FOUND, a full queue UNAVAILABLE (with ``retry-after`` metadata).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from loopml.errors import (
    AuthError,
    ConflictError,
    InvalidInputError,
    LoopmlError,
    NotFoundError,
    StoreError,
)
from loopml.serve.events import log, log_event
from loopml.serve.http import MAX_MESSAGE, MAX_WHERE, OverloadedError
from loopml.serve.v2 import infer_response, model_metadata, parse_infer_request, repository_index
from loopml.utils import shorten

if TYPE_CHECKING:
    from loopml.serve.app import ModelServer
    from loopml.serve.oip import Messages

ENDPOINT = "grpc_infer"  # the endpoint label of the request metrics
KEY_METADATA = "x-loopml-key"  # the sticky-routing key, as the HTTP header
ERROR_METADATA = "loopml-error-bin"  # the HTTP error body, JSON

# little-endian numpy dtypes of the V2 datatypes in raw contents
RAW_DTYPES = {
    "BOOL": "|b1",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
# the InferTensorContents field holding each datatype's typed values (FP16 travels raw only)
CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
CONTENT_FIELDS = tuple(sorted(set(CONTENTS.values())))
LENGTH = struct.Struct("<I")  # the 4-byte length before each element of a raw BYTES tensor


def _bad(message: str, where: dict[str, Any], hint: str) -> InvalidInputError:
    return InvalidInputError(message, where=where, hint=hint)


# -- tensors in -----------------------------------------------------------------------------


def split_bytes(raw: bytes, name: str, k: int) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes."""
    out: list[bytes] = []
    pos, end = 0, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise _bad(
                f"input {shorten(repr(name))} raw contents end inside an element's length",
                {"input": name, "field": f"raw_input_contents[{k}]"},
                "Each BYTES element is a 4-byte little-endian length followed by its bytes",
            )
        (size,) = LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + size > end:
            raise _bad(
                f"input {shorten(repr(name))} raw contents announce a {size}-byte element but "
                f"hold only {end - pos} more bytes",
                {"input": name, "field": f"raw_input_contents[{k}]"},
                "Each BYTES element is a 4-byte little-endian length followed by its bytes",
            )
        out.append(raw[pos : pos + size])
        pos += size
    return out


def _texts(items: Sequence[bytes], name: str, field: str) -> list[str]:
    try:
        return [b.decode() for b in items]
    except UnicodeDecodeError:
        row = next(i for i, b in enumerate(items) if not _is_utf8(b))
        raise _bad(
            f"input {shorten(repr(name))} value {row} is not UTF-8 text",
            {"input": name, "field": field, "row": row},
            "Send categories and dates as UTF-8 strings",
        ) from None


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


def _raw_values(raw: bytes, datatype: str, name: str, k: int) -> list[Any]:
    if datatype == "BYTES":
        return _texts(split_bytes(raw, name, k), name, f"raw_input_contents[{k}]")
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        return []  # not a V2 datatype: the V2 checks name it
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise _bad(
            f"input {shorten(repr(name))} raw contents hold {len(raw)} bytes, not a whole "
            f"number of {size}-byte {datatype} values",
            {"input": name, "field": f"raw_input_contents[{k}]"},
            "Send the tensor's values packed little-endian, row-major",
        )
    if datatype == "BOOL":
        return (np.frombuffer(raw, dtype="<u1") != 0).tolist()  # type: ignore[no-any-return]
    return np.frombuffer(raw, dtype=dtype).tolist()  # type: ignore[no-any-return]


def _typed_values(tensor: Any, k: int) -> list[Any]:
    name, datatype, contents = tensor.name, tensor.datatype, tensor.contents
    field = CONTENTS.get(datatype)
    for other in CONTENT_FIELDS:
        if other != field and len(getattr(contents, other)):
            if field is not None:
                hint = f"Put {datatype} values in contents.{field}"
            elif datatype in RAW_DTYPES:
                hint = f"Send {datatype} values in raw_input_contents"
            else:
                hint = f"Use one of the V2 datatypes: {', '.join(sorted(CONTENTS))}, FP16"
            raise _bad(
                f"input {shorten(repr(name))} has datatype {shorten(datatype)} but its values "
                f"are in contents.{other}",
                {"input": name, "field": f"inputs[{k}].contents.{other}"},
                hint,
            )
    if field is None:
        return []  # FP16 (raw only) or not a V2 datatype: the shape check names what is wrong
    values = getattr(contents, field)
    if datatype == "BYTES":
        return _texts(list(values), name, f"inputs[{k}].contents.bytes_contents")
    return list(values)


def request_body(request: Any) -> dict[str, Any]:
    """A ``ModelInferRequest`` as the JSON body ``/v2/models/{name}/infer`` takes, so that
    :func:`loopml.serve.v2.parse_infer_request` checks both alike (same messages)."""
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise _bad(
            f"the request has {len(tensors)} inputs but {len(raw)} raw_input_contents",
            {"field": "raw_input_contents"},
            "Send one raw_input_contents entry per input, in the order of the inputs",
        )
    inputs: list[dict[str, Any]] = []
    for k, tensor in enumerate(tensors):
        if raw:
            if tensor.HasField("contents"):
                raise _bad(
                    f"input {shorten(repr(tensor.name))} has contents while the request uses "
                    "raw_input_contents",
                    {"input": tensor.name, "field": f"inputs[{k}].contents"},
                    "Send every input's values one way: all in raw_input_contents or all in "
                    "contents",
                )
            data = _raw_values(raw[k], tensor.datatype, tensor.name, k)
        else:
            data = _typed_values(tensor, k)
        inputs.append(
            {
                "name": tensor.name,
                "shape": list(tensor.shape),
                "datatype": tensor.datatype,
                "data": data,
            }
        )
    body: dict[str, Any] = {"inputs": inputs}
    if request.id:
        body["id"] = request.id
    if len(request.outputs):
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    return body


# -- tensors out ----------------------------------------------------------------------------


def _set_parameter(param: Any, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


def _raw_bytes(data: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in data]
        return b"".join(LENGTH.pack(len(b)) + b for b in items)
    return np.asarray(data, dtype=RAW_DTYPES[datatype]).tobytes()


def response_message(pb: Messages, answer: dict[str, Any], raw: bool) -> Any:
    """The V2 response body (:func:`loopml.serve.v2.infer_response`) as a
    ``ModelInferResponse``: values in ``raw_output_contents`` when ``raw``, else typed."""
    response = pb.ModelInferResponse(
        model_name=answer["model_name"], model_version=answer["model_version"], id=answer["id"]
    )
    for out in answer["outputs"]:
        datatype = out["datatype"]
        tensor = response.outputs.add(name=out["name"], datatype=datatype, shape=out["shape"])
        for key, value in out.get("parameters", {}).items():
            _set_parameter(tensor.parameters[key], value)
        if raw:
            response.raw_output_contents.append(_raw_bytes(out["data"], datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(v).encode() for v in out["data"])
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(out["data"])
    return response


# -- errors ---------------------------------------------------------------------------------


def status_code(exc: LoopmlError) -> Any:
    """The gRPC status of a loopml error (as its HTTP status, in gRPC's terms)."""
    import grpc

    if isinstance(exc, OverloadedError | StoreError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InvalidInputError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, AuthError):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, ConflictError):
        return grpc.StatusCode.ABORTED
    status = exc.http_status
    if 400 <= status < 500:
        return grpc.StatusCode.FAILED_PRECONDITION
    if status == 503:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def error_body(exc: LoopmlError) -> dict[str, Any]:
    """The JSON body HTTP answers for ``exc``, with its message and hint cut as HTTP cuts them."""
    body = exc.to_dict()
    for key in ("message", "hint"):
        if isinstance(body.get(key), str):
            body[key] = shorten(body[key], MAX_MESSAGE)
    body["where"] = {
        shorten(str(k), MAX_WHERE): shorten(v, MAX_WHERE) if isinstance(v, str) else v
        for k, v in body["where"].items()
    }
    return body


# -- the service ----------------------------------------------------------------------------


class InferenceService:
    """``inference.GRPCInferenceService`` over one :class:`ModelServer`."""

    def __init__(self, server: ModelServer, pb: Messages) -> None:
        self.server = server
        self.pb = pb

    def _model_set(self) -> Any:
        models = self.server.models
        if models is None:
            raise StoreError(
                "the server has not loaded its models",
                hint="Wait until ServerReady answers true",
            )
        return models

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        server = self.server
        ok = server.models is not None and server.models.ready and not server.stopping
        return self.pb.ServerReadyResponse(ready=ok)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        served = self._model_set().pick(request.name, request.version or None)
        return self.pb.ModelReadyResponse(ready=served.ready and not self.server.stopping)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return self.pb.ServerMetadataResponse(name="loopml", version=self.server.version)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        models = self._model_set()
        name, version = request.name, request.version or None
        runtime = models.runtime(name, version)
        served = models.pick(name, version)
        versions = [runtime.version_text]
        for other in models.get(name):
            text = other.runtime.version_text if other.runtime is not None else None
            if text is not None and text not in versions:
                versions.append(text)
        meta = model_metadata(name, served.full_ref, runtime, versions)
        response = self.pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"]
        )
        for key in ("inputs", "outputs"):
            for t in meta[key]:
                getattr(response, key).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return response

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        models = self.server.models
        entries = list(models.entries()) if models is not None else []
        response = self.pb.RepositoryIndexResponse()
        for item in repository_index(entries, request.ready):
            response.models.add(
                name=item["name"],
                version=item.get("version", ""),
                state=item["state"],
                reason=item["reason"],
            )
        return response

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        t0 = perf_counter()
        server = self.server
        name, version = request.model_name, request.model_version or None
        key = next((v for k, v in context.invocation_metadata() or () if k == KEY_METADATA), None)
        key = key if isinstance(key, str) else None
        runtime = server._runtime(name, version, ENDPOINT, t0, key)
        try:
            parsed = parse_infer_request(request_body(request), runtime, server.max_rows)
        except LoopmlError as exc:
            server._count_error(name, runtime.version_text, ENDPOINT, exc, t0)
            raise
        result = await server.infer(
            name,
            version,
            parsed.columns,
            endpoint=ENDPOINT,
            key=key,
            runtime=runtime,
            t0=t0,
        )
        answer = infer_response(name, runtime, result.prediction, result.ids, parsed)
        return response_message(self.pb, answer, raw=bool(request.raw_input_contents))

    # -- wiring -----------------------------------------------------------------------------

    def _guarded(
        self, method: str, call: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        import grpc

        path = f"/{self.pb.service.full_name}/{method}"

        async def guarded(request: Any, context: Any) -> Any:
            try:
                return await call(request, context)
            except grpc.aio.AbortError:
                raise
            except LoopmlError as exc:
                code = status_code(exc)
                body = error_body(exc)
                metadata: list[tuple[str, str | bytes]] = [(ERROR_METADATA, orjson.dumps(body))]
                if isinstance(exc, OverloadedError):
                    metadata.append(("retry-after", str(exc.retry_after)))
                level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.INFO
                log_event(
                    level,
                    "request_error",
                    method="gRPC",
                    path=path,
                    status=code.name,
                    code=exc.code,
                    where=exc.where or None,
                )
                await context.abort(code, body["message"], trailing_metadata=tuple(metadata))
            except Exception as exc:
                log.exception("event=request_error method=gRPC path=%s status=INTERNAL", path)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"the server failed to answer ({type(exc).__name__}); the server log has "
                    "the details",
                )

        return guarded

    def handler(self) -> Any:
        """The generic handler serving every call of the service."""
        import grpc

        handlers = {}
        for method in self.pb.service.methods:
            call = getattr(self, method.name)
            request_cls, response_cls = self.pb.request_response(method.name)
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                self._guarded(method.name, call),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        return grpc.method_handlers_generic_handler(self.pb.service.full_name, handlers)


@dataclass
class GrpcServer:
    """A running gRPC server: its bound address; ``await stop(grace)`` ends it."""

    server: Any  # grpc.aio.Server
    host: str
    port: int

    @property
    def target(self) -> str:
        """``host:port`` as a gRPC client dials it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish for up to ``grace`` seconds (None: all
        of them), then close."""
        await self.server.stop(grace)


async def start_grpc(
    server: ModelServer, host: str | None, port: int, *, reuse_port: bool = False
) -> GrpcServer:
    """Serve the Open Inference Protocol over gRPC for ``server`` on ``host:port`` (``host``
    None: the HTTP server's host; ``port`` 0: a free one, see ``.port``), in the running event
    loop. Messages are bounded by ``server.max_body_bytes``. ``reuse_port`` lets the
    ``--workers`` processes share the port."""
    try:
        import grpc
    except ImportError:
        raise InvalidInputError(
            "serving over gRPC needs grpcio and protobuf",
            where={"option": "--grpc-port"},
            hint="pip install 'loopml[grpc]', or leave --grpc-port at 0",
        ) from None
    from loopml.serve.oip import messages

    host = host or server.host
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise InvalidInputError(
            f"the gRPC port is {port!r}",
            where={"option": "--grpc-port"},
            hint="Use a port between 1 and 65535 (0 turns gRPC off for loopml serve)",
        )
    options = [
        ("grpc.max_receive_message_length", server.max_body_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    aio = grpc.aio.server(options=options)
    aio.add_generic_rpc_handlers((InferenceService(server, messages()).handler(),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = aio.add_insecure_port(address)
    except RuntimeError as exc:
        bound = 0
        reason = str(exc)
    else:
        reason = "the port is in use or the address is not this machine's"
    if not bound:
        await aio.stop(None)
        raise InvalidInputError(
            f"cannot listen for gRPC on {address}: {shorten(reason, 200)}",
            where={"host": host, "port": port},
            hint="Choose another --grpc-port or stop what uses this one",
        )
    await aio.start()
    log_event(logging.INFO, "grpc_listening", target=address if port else f"{host}:{bound}")
    return GrpcServer(aio, host, bound)
