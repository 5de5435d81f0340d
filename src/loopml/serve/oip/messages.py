"""The protocol's message classes, built from :data:`~loopml.serve.oip.proto.GRPC_PREDICT_V2`
at first use (no generated code; works with whatever protobuf runtime is installed)."""

from __future__ import annotations

from functools import cache
from typing import Any

from loopml.serve.oip.proto import file_descriptor

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"


class Messages:
    """One class per top-level message of the protocol, as attributes
    (``Messages.ModelInferRequest``), plus ``pool`` and ``file`` (the descriptors)."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pool, message_factory

        self.pool = descriptor_pool.DescriptorPool()
        self.file = self.pool.AddSerializedFile(file_descriptor().SerializeToString())
        self._classes: dict[str, Any] = {}
        for name, desc in self.file.message_types_by_name.items():
            self._classes[name] = message_factory.GetMessageClass(desc)
        self.service = self.file.services_by_name["GRPCInferenceService"]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_classes"][name]
        except KeyError:
            raise AttributeError(name) from None

    def request_response(self, method: str) -> tuple[Any, Any]:
        """The request and response classes of one call of the service."""
        from google.protobuf import message_factory

        desc = self.service.methods_by_name[method]
        return (
            message_factory.GetMessageClass(desc.input_type),
            message_factory.GetMessageClass(desc.output_type),
        )


@cache
def messages() -> Messages:
    """The protocol's classes (built once per process)."""
    return Messages()
