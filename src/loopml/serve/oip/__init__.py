"""The Open Inference Protocol (KServe V2) over gRPC: the messages of ``grpc_predict_v2.proto``.

:mod:`loopml.serve.oip.proto` holds the .proto text and reads it; :mod:`.messages` builds the
message classes from it at import time, in a descriptor pool of its own (so they never clash
with another library's ``inference.*`` classes in the same process, tritonclient's included).
Importing this package imports protobuf: only the gRPC server does.
"""

from loopml.serve.oip.messages import PACKAGE, SERVICE, Messages, messages

__all__ = ["PACKAGE", "SERVICE", "Messages", "messages"]
