"""The Open Inference Protocol's gRPC definition, as .proto text, and a reader for it.

:data:`GRPC_PREDICT_V2` is the KServe V2 ``grpc_predict_v2.proto`` (package ``inference``, the
messages and field numbers of the public spec, which Triton's ``grpc_service.proto`` extends),
with Triton's ``RepositoryIndex`` call added. It is the one source of the message classes:
:func:`file_descriptor` reads it into a ``FileDescriptorProto`` at import time, so there is no
generated code to keep in sync with the installed protobuf, and nothing to regenerate (change
the text, and the classes follow).

The reader takes the subset of proto3 the text uses: ``syntax``, ``package``, messages (nested
too), scalar, message and ``map<K, V>`` fields, ``repeated``, ``oneof`` and a service of unary
calls; anything else is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GRPC_PREDICT_V2 = """
syntax = "proto3";
package inference;

service GRPCInferenceService {
  rpc ServerLive(ServerLiveRequest) returns (ServerLiveResponse) {}
  rpc ServerReady(ServerReadyRequest) returns (ServerReadyResponse) {}
  rpc ModelReady(ModelReadyRequest) returns (ModelReadyResponse) {}
  rpc ServerMetadata(ServerMetadataRequest) returns (ServerMetadataResponse) {}
  rpc ModelMetadata(ModelMetadataRequest) returns (ModelMetadataResponse) {}
  rpc ModelInfer(ModelInferRequest) returns (ModelInferResponse) {}
  // Triton's model repository extension
  rpc RepositoryIndex(RepositoryIndexRequest) returns (RepositoryIndexResponse) {}
}

message ServerLiveRequest {}
message ServerLiveResponse { bool live = 1; }

message ServerReadyRequest {}
message ServerReadyResponse { bool ready = 1; }

message ModelReadyRequest {
  string name = 1;
  string version = 2;
}
message ModelReadyResponse { bool ready = 1; }

message ServerMetadataRequest {}
message ServerMetadataResponse {
  string name = 1;
  string version = 2;
  repeated string extensions = 3;
}

message ModelMetadataRequest {
  string name = 1;
  string version = 2;
}
message ModelMetadataResponse {
  message TensorMetadata {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
  }
  string name = 1;
  repeated string versions = 2;
  string platform = 3;
  repeated TensorMetadata inputs = 4;
  repeated TensorMetadata outputs = 5;
}

message ModelInferRequest {
  message InferInputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    InferTensorContents contents = 5;
  }
  message InferRequestedOutputTensor {
    string name = 1;
    map<string, InferParameter> parameters = 2;
  }
  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferInputTensor inputs = 5;
  repeated InferRequestedOutputTensor outputs = 6;
  repeated bytes raw_input_contents = 7;
}

message ModelInferResponse {
  message InferOutputTensor {
    string name = 1;
    string datatype = 2;
    repeated int64 shape = 3;
    map<string, InferParameter> parameters = 4;
    InferTensorContents contents = 5;
  }
  string model_name = 1;
  string model_version = 2;
  string id = 3;
  map<string, InferParameter> parameters = 4;
  repeated InferOutputTensor outputs = 5;
  repeated bytes raw_output_contents = 6;
}

message InferParameter {
  oneof parameter_choice {
    bool bool_param = 1;
    int64 int64_param = 2;
    string string_param = 3;
    double double_param = 4;
    uint64 uint64_param = 5;
  }
}

message InferTensorContents {
  repeated bool bool_contents = 1;
  repeated int32 int_contents = 2;
  repeated int64 int64_contents = 3;
  repeated uint32 uint_contents = 4;
  repeated uint64 uint64_contents = 5;
  repeated float fp32_contents = 6;
  repeated double fp64_contents = 7;
  repeated bytes bytes_contents = 8;
}

message RepositoryIndexRequest {
  string repository_name = 1;
  bool ready = 2;
}
message RepositoryIndexResponse {
  message ModelIndex {
    string name = 1;
    string version = 2;
    string state = 3;
    string reason = 4;
  }
  repeated ModelIndex models = 1;
}
"""

# FieldDescriptorProto.Type numbers of proto3's scalar types
SCALARS = {
    "double": 1,
    "float": 2,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "fixed64": 6,
    "fixed32": 7,
    "bool": 8,
    "string": 9,
    "bytes": 12,
    "uint32": 13,
    "sfixed32": 15,
    "sfixed64": 16,
    "sint32": 17,
    "sint64": 18,
}
TYPE_MESSAGE = 11
LABEL_OPTIONAL, LABEL_REPEATED = 1, 3
TOKEN = re.compile(r'\s+|//[^\n]*|"[^"]*"|[A-Za-z_][A-Za-z0-9_.]*|\d+|[{}()<>;=,]')


class ProtoSyntaxError(ValueError):
    """The .proto text is outside the subset :func:`file_descriptor` reads."""


@dataclass
class _Field:
    name: str
    type: str  # a scalar name or a message reference
    number: int
    repeated: bool = False
    oneof: int | None = None
    map_types: tuple[str, str] | None = None


@dataclass
class _Message:
    name: str
    fields: list[_Field] = field(default_factory=list)
    nested: list[_Message] = field(default_factory=list)
    oneofs: list[str] = field(default_factory=list)


@dataclass
class _File:
    package: str = ""
    messages: list[_Message] = field(default_factory=list)
    services: list[tuple[str, list[tuple[str, str, str]]]] = field(default_factory=list)


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            match = TOKEN.match(text, pos)
            if match is None:
                raise ProtoSyntaxError(f"unexpected character {text[pos]!r} at offset {pos}")
            token = match.group()
            pos = match.end()
            if not token.isspace() and not token.startswith("//"):
                self.tokens.append(token)
        self.i = 0

    def peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if not token or (expected is not None and token != expected):
            want = repr(expected) if expected is not None else "more text"
            raise ProtoSyntaxError(f"expected {want}, got {token or 'the end'!r}")
        self.i += 1
        return token

    def name(self) -> str:
        token = self.take()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", token):
            raise ProtoSyntaxError(f"expected a name, got {token!r}")
        return token

    def number(self) -> int:
        token = self.take()
        if not token.isdigit():
            raise ProtoSyntaxError(f"expected a field number, got {token!r}")
        return int(token)

    def file(self) -> _File:
        out = _File()
        while self.peek():
            word = self.take()
            if word == "syntax":
                self.take("=")
                if self.take() != '"proto3"':
                    raise ProtoSyntaxError("only proto3 is read")
                self.take(";")
            elif word == "package":
                out.package = self.name()
                self.take(";")
            elif word == "message":
                out.messages.append(self.message())
            elif word == "service":
                out.services.append(self.service())
            else:
                raise ProtoSyntaxError(f"unexpected {word!r} at the top level")
        return out

    def service(self) -> tuple[str, list[tuple[str, str, str]]]:
        name = self.name()
        self.take("{")
        methods = []
        while self.peek() != "}":
            self.take("rpc")
            method = self.name()
            self.take("(")
            request = self.name()
            self.take(")")
            self.take("returns")
            self.take("(")
            response = self.name()
            self.take(")")
            if self.peek() == "{":
                self.take("{")
                self.take("}")
            else:
                self.take(";")
            methods.append((method, request, response))
        self.take("}")
        return name, methods

    def message(self) -> _Message:
        msg = _Message(self.name())
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "message":
                self.take()
                msg.nested.append(self.message())
            elif self.peek() == "oneof":
                self.take()
                msg.oneofs.append(self.name())
                self.take("{")
                while self.peek() != "}":
                    msg.fields.append(self.field(oneof=len(msg.oneofs) - 1))
                self.take("}")
            else:
                msg.fields.append(self.field())
        self.take("}")
        return msg

    def field(self, oneof: int | None = None) -> _Field:
        repeated = False
        map_types = None
        if self.peek() == "repeated":
            self.take()
            repeated = True
        if self.peek() == "map":
            self.take()
            self.take("<")
            key = self.name()
            self.take(",")
            value = self.name()
            self.take(">")
            map_types = (key, value)
            type_name = ""
            repeated = True
        else:
            type_name = self.name()
        name = self.name()
        self.take("=")
        number = self.number()
        self.take(";")
        return _Field(name, type_name, number, repeated, oneof, map_types)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def file_descriptor(text: str = GRPC_PREDICT_V2, name: str = "loopml/grpc_predict_v2.proto") -> Any:
    """``text`` as a ``google.protobuf.descriptor_pb2.FileDescriptorProto``, every type
    reference resolved to its full name."""
    from google.protobuf import descriptor_pb2

    parsed = _Reader(text).file()
    pkg = parsed.package
    known: set[str] = set()

    def collect(msg: _Message, scope: str) -> None:
        full = f"{scope}.{msg.name}"
        known.add(full)
        for nested in msg.nested:
            collect(nested, full)
        for f in msg.fields:
            if f.map_types is not None:
                known.add(f"{full}.{_camel(f.name)}Entry")

    for msg in parsed.messages:
        collect(msg, pkg)

    def resolve(ref: str, scope: str) -> str:
        parts = scope.split(".")
        while parts:
            candidate = ".".join([*parts, ref])
            if candidate in known:
                return "." + candidate
            parts.pop()
        if ref in known:
            return "." + ref
        raise ProtoSyntaxError(f"unknown type {ref!r} (in {scope})")

    def fill_field(out: Any, f: _Field, type_name: str, scope: str) -> None:
        out.name = f.name
        out.number = f.number
        out.json_name = _camel(f.name)[:1].lower() + _camel(f.name)[1:]
        out.label = LABEL_REPEATED if f.repeated else LABEL_OPTIONAL
        if type_name in SCALARS:
            out.type = SCALARS[type_name]
        else:
            out.type = TYPE_MESSAGE
            out.type_name = resolve(type_name, scope)

    def build(out: Any, msg: _Message, scope: str) -> None:
        full = f"{scope}.{msg.name}"
        out.name = msg.name
        for oneof in msg.oneofs:
            out.oneof_decl.add().name = oneof
        for nested in msg.nested:
            build(out.nested_type.add(), nested, full)
        for f in msg.fields:
            fd = out.field.add()
            if f.map_types is not None:
                entry_name = f"{_camel(f.name)}Entry"
                entry = out.nested_type.add()
                entry.name = entry_name
                entry.options.map_entry = True
                key, value = f.map_types
                fill_field(entry.field.add(), _Field("key", key, 1), key, full)
                fill_field(entry.field.add(), _Field("value", value, 2), value, full)
                fill_field(fd, f, entry_name, full)
            else:
                fill_field(fd, f, f.type, full)
            if f.oneof is not None:
                fd.oneof_index = f.oneof

    out = descriptor_pb2.FileDescriptorProto(name=name, package=pkg, syntax="proto3")
    for msg in parsed.messages:
        build(out.message_type.add(), msg, pkg)
    for service_name, methods in parsed.services:
        service = out.service.add(name=service_name)
        for method, request, response in methods:
            service.method.add(
                name=method,
                input_type=resolve(request, pkg),
                output_type=resolve(response, pkg),
            )
    return out
