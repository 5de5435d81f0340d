"""The Open Inference Protocol (KServe V2) REST shapes: requests in, responses and metadata out.

Two ways to send rows to ``/v2/models/{name}/infer``:

* one tensor per feature, named like the feature, shape ``[N]`` or ``[N, 1]``; numeric
  features as a numeric datatype (``FP64``, ``INT64``, ...), categorical ones as ``BYTES``;
* for models whose features are all numeric, one 2-D tensor of shape ``[N, F]`` with the
  features in signature order (any name);
* for a model that declares a tensor input (a CNN: ``[N, 1, 28, 28]`` ``FP32`` images, see
  :class:`~loopml.registry.signature.TensorSpec`), one tensor of exactly that shape and
  datatype (named like it, or of rank 3 or more); anything else is a 400 naming the input.

``data`` may be flat (row-major) or nested. Rows are then checked against the model signature
like any other request, so an error names the row and the feature.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from loopml.errors import InvalidInputError
from loopml.kinds import CATEGORICAL, NUMERIC
from loopml.registry.bundle import Prediction
from loopml.registry.signature import TensorSpec, tensor_of
from loopml.serve.http import too_many_rows
from loopml.serve.records import RowBlock, plain_block
from loopml.serve.runtime import ModelRuntime, ServedModel
from loopml.utils import shorten

NUMERIC_DATATYPES = frozenset(
    ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32")
) | {"FP64"}
DATATYPES = NUMERIC_DATATYPES | {"BOOL", "BYTES"}
OUTPUT_NAMES = ("label", "probabilities", "prediction_id")
REQUEST_KEYS = frozenset(("id", "parameters", "inputs", "outputs"))
TENSOR_KEYS = frozenset(("name", "shape", "datatype", "parameters", "data"))


@dataclass(frozen=True)
class InferRequest:
    """A parsed V2 request: the rows as one list of values per feature, and what to answer."""

    id: str | None
    columns: dict[str, list[Any]] | RowBlock  # a block: an image tensor of plain numbers
    rows: int
    outputs: list[str] | None

    @property
    def records(self) -> list[dict[str, Any]]:
        """The rows as records (feature -> value)."""
        if isinstance(self.columns, RowBlock):
            names = list(self.columns.names)
            return [dict(zip(names, row, strict=True)) for row in self.columns.block.tolist()]
        names = list(self.columns)
        return [
            dict(zip(names, row, strict=True)) for row in zip(*self.columns.values(), strict=True)
        ]


def _bad(message: str, where: dict[str, Any], hint: str) -> InvalidInputError:
    return InvalidInputError(message, where=where, hint=hint)


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _tensor(t: Any, k: int, max_rows: int) -> tuple[str, list[int], str, list[Any]]:
    where: dict[str, Any] = {"field": f"inputs[{k}]"}
    if not isinstance(t, dict):
        raise _bad(
            f"inputs[{k}] is {type(t).__name__}, not an object",
            where,
            'Each input is {"name": ..., "shape": [...], "datatype": ..., "data": [...]}',
        )
    for key in ("name", "shape", "datatype", "data"):
        if key not in t:
            raise _bad(
                f"inputs[{k}] has no {key!r}",
                {"field": f"inputs[{k}].{key}"},
                'Each input is {"name": ..., "shape": [...], "datatype": ..., "data": [...]}',
            )
    unknown = sorted(set(t) - TENSOR_KEYS)
    if unknown:
        raise _bad(
            f"inputs[{k}] has unknown key {shorten(repr(unknown[0]))}",
            {"field": f"inputs[{k}].{shorten(unknown[0])}"},
            f"An input tensor has only: {', '.join(sorted(TENSOR_KEYS))}",
        )
    name, shape, datatype, data = t["name"], t["shape"], t["datatype"], t["data"]
    if not isinstance(name, str):
        raise _bad(
            f"inputs[{k}].name must be a string",
            {"field": f"inputs[{k}].name"},
            "Name the tensor like the feature it carries",
        )
    shown = shorten(repr(name))
    where = {"input": name, "field": f"inputs[{k}].shape"}
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise _bad(
            f"input {shown} has shape {shorten(repr(shape))}; a shape is a list of "
            "non-negative integers",
            where,
            "Use [N] or [N, 1] for one feature, [N, F] for a 2-D tensor of all features",
        )
    if shape[0] > max_rows:
        raise too_many_rows(shape[0], max_rows, f"inputs[{k}].shape")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise _bad(
            f"input {shown} has datatype {shorten(repr(datatype))}, which is not a V2 datatype",
            {"input": name, "field": f"inputs[{k}].datatype"},
            f"Use one of: {', '.join(sorted(DATATYPES))}",
        )
    if not isinstance(data, list):
        raise _bad(
            f"input {shown} data must be a JSON array, got {type(data).__name__}",
            {"input": name, "field": f"inputs[{k}].data"},
            "Send the values as a flat (row-major) or nested array",
        )
    if "parameters" in t and not isinstance(t["parameters"], dict):
        raise _bad(
            f"inputs[{k}].parameters must be an object",
            {"input": name, "field": f"inputs[{k}].parameters"},
            "Send an object or omit it",
        )
    flat = _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise _bad(
            f"input {shown} has {len(flat)} values but shape {shorten(str(shape))} needs "
            f"{shorten(str(expected))}",
            {"input": name, "field": f"inputs[{k}].data"},
            "Make the data match the shape (row-major)",
        )
    return name, shape, datatype, flat


def parse_infer_request(
    body: Any, runtime: ModelRuntime, max_rows: int, raw: bytes | None = None
) -> InferRequest:
    """Check a V2 inference request and turn its tensors into one list of values per feature
    (at most ``max_rows`` rows); the values are checked against the signature afterwards.

    ``raw``: the JSON text ``body`` was parsed from. Without ``true`` or ``false`` in it no
    value can be a bool, so an image tensor's values are not scanned one by one for them."""
    if not isinstance(body, dict):
        raise _bad(
            f"the request body is {type(body).__name__}, not an object",
            {"field": "body"},
            'Send {"inputs": [{"name", "shape", "datatype", "data"}, ...]}',
        )
    unknown = sorted(set(body) - REQUEST_KEYS)
    if unknown:
        raise _bad(
            f"unknown key {shorten(repr(unknown[0]))} in the inference request",
            {"field": shorten(unknown[0])},
            f"A V2 inference request has only: {', '.join(sorted(REQUEST_KEYS))}",
        )
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad("'id' must be a string", {"field": "id"}, "Send the request id as a string")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise _bad(
            "'parameters' must be an object",
            {"field": "parameters"},
            "Send an object of key/value pairs or omit it",
        )
    outputs = _requested_outputs(body.get("outputs"), runtime)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad(
            "'inputs' must be a non-empty list of tensors",
            {"field": "inputs"},
            'Send {"inputs": [{"name": FEATURE, "shape": [N], "datatype": "FP64", "data": [...]}]}',
        )
    features = runtime.signature.names
    tensors = [_tensor(t, k, max_rows) for k, t in enumerate(inputs)]
    first_name, first_shape = tensors[0][0], tensors[0][1]
    spec = tensor_input(runtime)
    if spec is not None and len(tensors) == 1 and (first_name == spec.name or len(first_shape) > 2):
        no_bools = raw is not None and b"true" not in raw and b"false" not in raw
        columns, rows = _image_columns(tensors[0], spec, runtime, no_bools)
    elif (
        len(tensors) == 1
        and len(first_shape) == 2
        and (first_name not in features or (first_shape[1] == len(features) > 1))
    ):
        columns, rows = _matrix_columns(tensors[0], runtime)
    else:
        columns, rows = _named_columns(tensors, runtime)
    return InferRequest(request_id, columns, rows, outputs)


def _requested_outputs(value: Any, runtime: ModelRuntime) -> list[str] | None:
    if value is None:
        return None
    available = [o for o in OUTPUT_NAMES if o != "probabilities" or runtime.classes is not None]
    hint = f"This model's outputs: {', '.join(available)}"
    if not isinstance(value, list):
        raise _bad("'outputs' must be a list of objects", {"field": "outputs"}, hint)
    names: list[str] = []
    for k, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in available:
            raise _bad(
                f"outputs[{k}] asks for {shorten(repr(name))}, which this model does not produce",
                {"field": f"outputs[{k}].name"},
                hint,
            )
        names.append(name)
    return names


def _kind_check(runtime: ModelRuntime, name: str, datatype: str, k: int) -> None:
    field = next(f for f in runtime.signature.inputs if f.name == name)
    # a numeric column declared categorical (a zip code) takes numbers too: categories
    # compare by value, so 1 and "1" are one category
    numbers_ok = field.numeric_categories or field.boolean_categories
    if field.kind == CATEGORICAL and datatype != "BYTES" and not numbers_ok:
        raise _bad(
            f"input {name!r} is categorical and must have datatype BYTES, got {datatype}",
            {"input": name, "field": f"inputs[{k}].datatype"},
            "Send categories as strings with datatype BYTES",
        )
    if field.kind == NUMERIC and datatype == "BYTES":
        raise _bad(
            f"input {name!r} is numeric and cannot have datatype BYTES",
            {"input": name, "field": f"inputs[{k}].datatype"},
            "Use FP64 (or another numeric datatype) for numeric features",
        )


def _named_columns(
    tensors: list[tuple[str, list[int], str, list[Any]]], runtime: ModelRuntime
) -> tuple[dict[str, list[Any]], int]:
    features = runtime.signature.names
    known = set(features)
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    for k, (name, shape, datatype, flat) in enumerate(tensors):
        if name not in known:
            continue  # an extra input is ignored, as an extra field of a record is
        if name in columns:
            raise _bad(
                f"input {name!r} is given twice",
                {"input": name, "field": f"inputs[{k}]"},
                "Send each feature once",
            )
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise _bad(
                f"input {name!r} has shape {shorten(str(shape))}; a per-feature tensor is [N] "
                "or [N, 1]",
                {"input": name, "field": f"inputs[{k}].shape"},
                "Send one column per feature, or one [N, F] tensor for all-numeric models",
            )
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            raise _bad(
                f"input {name!r} has {shape[0]} rows but the inputs before it have {rows}",
                {"input": name, "field": f"inputs[{k}].shape"},
                "Every input tensor must have the same number of rows",
            )
        _kind_check(runtime, name, datatype, k)
        columns[name] = flat
    missing = [f for f in features if f not in columns]
    if missing:
        raise _bad(
            f"no input tensor for feature {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            {"field": missing[0]},
            f"Send one tensor per feature: {', '.join(features)}",
        )
    if not rows:
        raise _bad("the inputs have no rows", {"field": "inputs"}, "Send at least one row")
    return {f: columns[f] for f in features}, rows


def _matrix_columns(
    tensor: tuple[str, list[int], str, list[Any]], runtime: ModelRuntime
) -> tuple[dict[str, list[Any]], int]:
    name, shape, datatype, flat = tensor
    features = runtime.signature.names
    width = len(features)
    where = {"input": name, "field": "inputs[0].shape"}
    if not runtime.numeric_only:
        raise _bad(
            "a single 2-D input tensor only works for models whose features are all numeric",
            where,
            f"This model has categorical features; send one tensor per feature: "
            f"{', '.join(features)}",
        )
    if datatype not in NUMERIC_DATATYPES and datatype != "BOOL":
        raise _bad(
            f"input {shorten(repr(name))} has datatype {datatype}; the features are numeric",
            {"input": name, "field": "inputs[0].datatype"},
            "Use FP64 (or another numeric datatype)",
        )
    if shape[1] != width:
        raise _bad(
            f"input {shorten(repr(name))} has {shape[1]} columns but the model has {width} "
            "features",
            where,
            f"Send shape [N, {width}] with columns in this order: {', '.join(features)}",
        )
    if shape[0] == 0:
        raise _bad("the input has no rows", where, "Send at least one row")
    return {f: flat[j::width] for j, f in enumerate(features)}, shape[0]


_TENSOR_SPECS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def tensor_input(runtime: ModelRuntime) -> TensorSpec | None:
    """The tensor input the version's model declares (a CNN's image), else None; worked
    out once per loaded bundle."""
    bundle = runtime.loaded.bundle
    try:
        return _TENSOR_SPECS[bundle]  # type: ignore[no-any-return]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: no cache
        return _declared(bundle, runtime)
    spec = _declared(bundle, runtime)
    _TENSOR_SPECS[bundle] = spec
    return spec


def _declared(bundle: Any, runtime: ModelRuntime) -> TensorSpec | None:
    recorded = tensor_of(runtime.signature)  # the version's signature says
    if recorded is not None:
        return recorded if runtime.numeric_only else None
    # a version registered before signatures recorded it: the model's flavor says
    hook = getattr(bundle.flavor_impl, "tensor_input", None)
    if not callable(hook) or not runtime.numeric_only:
        return None
    spec: TensorSpec | None = hook(bundle.estimator, len(runtime.signature.inputs))
    return spec


def _image_columns(
    tensor: tuple[str, list[int], str, list[Any]],
    spec: TensorSpec,
    runtime: ModelRuntime,
    no_bools: bool = False,
) -> tuple[dict[str, list[Any]] | RowBlock, int]:
    """A tensor ``[n, *spec.shape]`` of ``spec.datatype``, checked: one row-major block when
    every value is a plain number (no per-pixel columns to build and check), else one column
    per input (each image's values are the signature's inputs in order) for the general
    reader, which names the image and pixel that is wrong."""
    name, shape, datatype, flat = tensor
    spec.check(name, shape, datatype, "inputs[0]")
    if shape[0] == 0:
        raise _bad("the input has no rows", {"input": name, "field": "inputs[0].shape"},
                   "Send at least one image")  # fmt: skip
    reader = runtime.reader
    if reader is not None:  # every value a plain number: the image as it is, unsplit
        # an FP32 tensor stays float32 (its values are float32 by its datatype): half the
        # bytes to batch, predict and spool (the compiled graph casts to float32 anyway)
        dtype = np.float32 if datatype == "FP32" else None
        block = plain_block(flat, shape[0], reader.names, dtype, no_bools=no_bools)
        if block is not None:
            return block, shape[0]
    features = runtime.signature.names
    width = len(features)
    return {f: flat[j::width] for j, f in enumerate(features)}, shape[0]


def _label_data(runtime: ModelRuntime, pred: Prediction) -> list[Any]:
    if runtime.label_datatype == "BYTES":
        return [str(v) for v in pred.labels.tolist()]
    if runtime.label_datatype == "FP64":
        return np.asarray(pred.labels, dtype=np.float64).tolist()  # type: ignore[no-any-return]
    return pred.labels.tolist()  # type: ignore[no-any-return]


def infer_response(
    model_name: str,
    runtime: ModelRuntime,
    pred: Prediction,
    prediction_ids: list[str],
    request: InferRequest,
) -> dict[str, Any]:
    """The V2 inference response for one request's rows."""
    n = len(prediction_ids)
    wanted = request.outputs
    outputs: list[dict[str, Any]] = []
    if wanted is None or "label" in wanted:
        outputs.append(
            {
                "name": "label",
                "shape": [n],
                "datatype": runtime.label_datatype,
                "data": _label_data(runtime, pred),
            }
        )
    if pred.probabilities is not None and (wanted is None or "probabilities" in wanted):
        k = pred.probabilities.shape[1]
        outputs.append(
            {
                "name": "probabilities",
                "shape": [n, k],
                "datatype": "FP64",
                "parameters": {"classes": orjson.dumps(runtime.class_keys).decode()},
                "data": pred.probabilities.ravel().tolist(),
            }
        )
    if wanted is None or "prediction_id" in wanted:
        outputs.append(
            {"name": "prediction_id", "shape": [n], "datatype": "BYTES", "data": prediction_ids}
        )
    return {
        "model_name": model_name,
        "model_version": runtime.version_text,
        "id": request.id if request.id is not None else prediction_ids[0],
        "outputs": outputs,
    }


def model_metadata(
    model_name: str, served_ref: str, runtime: ModelRuntime, versions: list[str]
) -> dict[str, Any]:
    """The V2 model metadata response (``versions``: every version served under the name,
    the one described first)."""
    sig = runtime.signature
    inputs = [
        {"name": f.name, "datatype": "FP64" if f.kind == NUMERIC else "BYTES", "shape": [-1]}
        for f in sig.inputs
    ]
    spec = tensor_input(runtime)
    if spec is not None:  # the image tensor first; one tensor per pixel column works too
        inputs.insert(0, spec.to_dict())
    outputs: list[dict[str, Any]] = [
        {"name": "label", "datatype": runtime.label_datatype, "shape": [-1]}
    ]
    parameters: dict[str, Any] = {"task": sig.task, "reference": served_ref}
    if runtime.classes is not None:
        outputs.append(
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(runtime.classes)]}
        )
        parameters["classes"] = orjson.dumps(runtime.class_keys).decode()
    outputs.append({"name": "prediction_id", "datatype": "BYTES", "shape": [-1]})
    return {
        "name": model_name,
        "versions": versions,
        "platform": runtime.platform,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    }


def repository_index(entries: list[ServedModel], ready_only: bool) -> list[dict[str, Any]]:
    """The model repository extension's index: one item per served version."""
    out = []
    for served in entries:
        runtime = served.runtime
        if ready_only and runtime is None:
            continue
        item: dict[str, Any] = {
            "name": served.name,
            "state": "READY" if runtime is not None else "UNAVAILABLE",
            "reason": served.last_error or "",
        }
        if runtime is not None:
            item["version"] = runtime.version_text
        out.append(item)
    return out


def parse_index_request(body: Any) -> bool:
    """``{"ready": true}`` asks for ready models only; an empty body for all."""
    if body is None:
        return False
    if not isinstance(body, dict) or set(body) - {"ready"}:
        raise _bad(
            'a repository index request is {} or {"ready": true|false}',
            {"field": "body"},
            'Send an empty body, {} or {"ready": true}',
        )
    ready = body.get("ready", False)
    if not isinstance(ready, bool):
        raise _bad("'ready' must be true or false", {"field": "ready"}, 'Send {"ready": true}')
    return ready
