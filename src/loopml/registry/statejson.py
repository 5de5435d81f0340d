"""Fitted feature pipelines as declared JSON: loopml's own format for its feature steps.

A bundle's feature pipeline (a ColumnTransformer of loopml's steps and scikit-learn's
transformers) is written as ``features.json`` when every object in it is of a type on
:mod:`loopml.registry.allowlist` and every value is one of a few plain kinds; otherwise it
is written with skops as before (``features.skops``). The format holds data only:

- JSON's own values (``null``, booleans, integers, finite floats, strings, arrays of them);
- tagged objects ``{"t": KIND, ...}`` for what JSON lacks: ``float`` (NaN and infinities),
  ``tuple``, ``dict`` (string keys), ``slice``, ``array`` (numbers as base64 of their
  little-endian bytes, with dtype and shape; text and objects element by element),
  ``scalar`` (a NumPy number), ``dtype``, ``type`` (a NumPy or Python scalar type, from a
  fixed table) and ``obj`` (an instance of a listed class and its attributes).

Reading it imports nothing but the listed classes: every class named in the file is checked
against the allowlist and the user's opt-ins before any object is built, as for a skops file
(:mod:`loopml.registry.safeload`); an object is built as skops builds one, ``cls.__new__``
then its state, and :mod:`loopml.registry.structure` checks it afterwards. Any malformed
part is an IntegrityError naming the file. Writing and reading need neither skops nor
pickle, and cost a few milliseconds where skops took most of a second.
"""

from __future__ import annotations

import base64
import importlib
import math
from collections.abc import Collection
from typing import Any

import numpy as np
import orjson

from loopml.errors import IntegrityError, LoopmlError

FORMAT = "loopml.features/1"
#: scalar types a ``type`` node may name (``OneHotEncoder(dtype=np.float64)``)
TYPES: dict[str, type] = {
    "builtins.bool": bool,
    "builtins.float": float,
    "builtins.int": int,
    "builtins.object": object,
    "builtins.str": str,
    "numpy.bool": np.bool_,
    "numpy.float16": np.float16,
    "numpy.float32": np.float32,
    "numpy.float64": np.float64,
    "numpy.int8": np.int8,
    "numpy.int16": np.int16,
    "numpy.int32": np.int32,
    "numpy.int64": np.int64,
    "numpy.uint8": np.uint8,
    "numpy.uint16": np.uint16,
    "numpy.uint32": np.uint32,
    "numpy.uint64": np.uint64,
}
_TYPE_NAMES = {t: name for name, t in TYPES.items()}
_NUMBER_KINDS = "biuf"  # dtypes stored as raw bytes
_MAX_DEPTH = 200


class NotEncodable(Exception):
    """The object holds something this format does not write (the bundle then uses skops);
    the message says what."""


# -- writing ------------------------------------------------------------------------------


def dumps(obj: Any, allowed: Collection[str]) -> bytes:
    """``obj`` as declared JSON; NotEncodable when it holds a value of another kind or an
    instance of a class not in ``allowed`` (the allowlist's names)."""
    return orjson.dumps({"format": FORMAT, "root": _enc(obj, allowed, 0)})


def _dtype_ok(dtype: np.dtype[Any]) -> bool:
    return dtype.fields is None and dtype.kind in _NUMBER_KINDS + "OU"


def _enc(v: Any, allowed: Collection[str], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise NotEncodable("nested too deeply")
    if v is None or type(v) in (bool, str):
        return v
    if type(v) is int:
        return v
    if type(v) is float:
        return v if math.isfinite(v) else {"t": "float", "v": repr(v)}
    d = depth + 1
    if type(v) is list:
        return [_enc(x, allowed, d) for x in v]
    if type(v) is tuple:
        return {"t": "tuple", "v": [_enc(x, allowed, d) for x in v]}
    if type(v) is dict:
        if not all(type(k) is str for k in v):
            raise NotEncodable("a dict with keys that are not text")
        return {"t": "dict", "v": {k: _enc(x, allowed, d) for k, x in v.items()}}
    if type(v) is slice:
        parts = (v.start, v.stop, v.step)
        if not all(p is None or type(p) is int for p in parts):
            raise NotEncodable("a slice of other than integers")
        return {"t": "slice", "v": list(parts)}
    if type(v) is np.ndarray:
        return _enc_array(v, allowed, d)
    if isinstance(v, np.generic) and type(v).__module__ == "numpy":
        if v.dtype.kind in _NUMBER_KINDS:
            return {"t": "scalar", "dtype": v.dtype.str, "v": _enc(v.item(), allowed, d)}
        if v.dtype.kind == "U":
            return {"t": "scalar", "dtype": "U", "v": str(v)}
        raise NotEncodable(f"a NumPy scalar of dtype {v.dtype}")
    if isinstance(v, np.dtype):
        if not _dtype_ok(v):
            raise NotEncodable(f"dtype {v}")
        return {"t": "dtype", "v": v.str}
    if isinstance(v, type):
        name = _TYPE_NAMES.get(v)
        if name is None:
            raise NotEncodable(f"the type {v.__module__}.{v.__qualname__}")
        return {"t": "type", "v": name}
    cls = type(v)
    name = f"{cls.__module__}.{cls.__name__}"
    if name not in allowed:
        raise NotEncodable(f"an object of type {name}")
    if isinstance(v, dict | list | tuple | set | frozenset | np.ndarray):
        # a container subclass (a Bunch) keeps its items outside its attributes
        raise NotEncodable(f"{name}, a container subclass")
    get = getattr(v, "__getstate__", None)
    state = get() if callable(get) else vars(v)
    if type(state) is not dict or not all(type(k) is str for k in state):
        raise NotEncodable(f"{name} whose state is not a dict of attributes")
    return {"t": "obj", "cls": name, "state": {k: _enc(x, allowed, d) for k, x in state.items()}}


def _enc_array(a: np.ndarray, allowed: Collection[str], depth: int) -> dict[str, Any]:
    if not _dtype_ok(a.dtype):
        raise NotEncodable(f"an array of dtype {a.dtype}")
    shape = list(a.shape)
    if a.dtype.kind in _NUMBER_KINDS:
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = np.ascontiguousarray(le).tobytes()
        return {"t": "array", "dtype": le.dtype.str, "shape": shape, "b64": _b64(raw)}
    flat = a.reshape(-1)
    if a.dtype.kind == "U":
        return {"t": "array", "dtype": a.dtype.str, "shape": shape, "v": [str(x) for x in flat]}
    return {
        "t": "array",
        "dtype": "|O",
        "shape": shape,
        "v": [_enc(x, allowed, depth) for x in flat],
    }


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- reading ------------------------------------------------------------------------------


class Document:
    """A parsed ``features.json``: its tree and the classes it names (nothing built yet)."""

    def __init__(self, root: Any, names: set[str], member: str, what: str) -> None:
        self.root = root
        self.names = names
        self.member = member
        self.what = what


def _damaged(what: str, member: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"{what}: {member} is not a readable feature pipeline ({detail})"[:400],
        where={"artifact": what, "file": member},
        hint="The artifact is damaged or was not written by loopml; retrain or re-register "
        "the model",
    )


def parse(data: bytes, member: str, what: str) -> Document:
    """Parse ``data`` and list the classes it names; IntegrityError when it is malformed."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # also nesting past orjson's limit
        raise _damaged(what, member, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "root" not in doc:
        raise _damaged(what, member, f"not in the format {FORMAT}")
    names: set[str] = set()
    stack = [doc["root"]]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node.get("t") == "obj":
                cls = node.get("cls")
                if not isinstance(cls, str):
                    raise _damaged(what, member, "an object without its class")
                names.add(cls)
            stack.extend(node.values())
    return Document(doc["root"], names, member, what)


def build(doc: Document, trusted: Collection[str], allowed: Collection[str]) -> Any:
    """The object of a parsed document whose classes are all in ``allowed`` or
    ``trusted`` (checked by the caller, who names every refused type; checked again here)."""
    from loopml.registry.structure import check_structure

    refused = sorted(n for n in doc.names if n not in allowed and n not in trusted)
    if refused:
        raise _damaged(doc.what, doc.member, f"unchecked types {', '.join(refused)}")
    try:
        obj = _Builder(doc).node(doc.root, 0)
        check_structure(obj, doc.what)
    except LoopmlError:
        raise
    except Exception as exc:  # a state scikit-learn refuses, a wrong value in a field...
        raise _damaged(doc.what, doc.member, f"{type(exc).__name__}: {exc}") from exc
    return obj


class _Builder:
    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def bad(self, detail: str) -> IntegrityError:
        return _damaged(self.doc.what, self.doc.member, detail)

    def node(self, v: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.bad("nested too deeply")
        if v is None or isinstance(v, bool | int | float | str):
            return v
        d = depth + 1
        if isinstance(v, list):
            return [self.node(x, d) for x in v]
        if not isinstance(v, dict):
            raise self.bad(f"a value of JSON type {type(v).__name__}")
        kind = v.get("t")
        if kind == "float":
            text = v.get("v")
            if text not in ("nan", "inf", "-inf"):
                raise self.bad(f"a float {text!r}")
            return float(text)
        if kind == "tuple":
            return tuple(self.node(x, d) for x in self.field(v, "v", list))
        if kind == "dict":
            return {k: self.node(x, d) for k, x in self.field(v, "v", dict).items()}
        if kind == "slice":
            parts = self.field(v, "v", list)
            if len(parts) != 3 or not all(p is None or type(p) is int for p in parts):
                raise self.bad("a slice of other than three integers")
            return slice(*parts)
        if kind == "array":
            return self.array(v, d)
        if kind == "scalar":
            return self.scalar(v, d)
        if kind == "dtype":
            return self.dtype(self.field(v, "v", str))
        if kind == "type":
            name = self.field(v, "v", str)
            if name not in TYPES:
                raise self.bad(f"the type {name!r}, which is not a scalar type loopml reads")
            return TYPES[name]
        if kind == "obj":
            return self.obj(v, d)
        raise self.bad(f"a node of kind {kind!r}")

    def field(self, v: dict[str, Any], key: str, kind: type) -> Any:
        value = v.get(key)
        if not isinstance(value, kind):
            raise self.bad(f"a {v.get('t')} node whose {key} is not a {kind.__name__}")
        return value

    def dtype(self, text: str) -> np.dtype[Any]:
        try:
            dtype = np.dtype(text)
        except TypeError:
            raise self.bad(f"dtype {text!r}") from None
        if not _dtype_ok(dtype) or dtype.str != text:
            raise self.bad(f"dtype {text!r}")
        return dtype

    def array(self, v: dict[str, Any], depth: int) -> np.ndarray:
        dtype = self.dtype(self.field(v, "dtype", str))
        shape = self.field(v, "shape", list)
        if not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 32:
            raise self.bad(f"an array of shape {shape!r}")
        size = math.prod(shape)
        if dtype.kind in _NUMBER_KINDS:
            try:
                raw = base64.b64decode(self.field(v, "b64", str), validate=True)
            except ValueError:
                raise self.bad("an array whose bytes are not base64") from None
            if len(raw) != size * dtype.itemsize:
                raise self.bad(
                    f"an array of shape {shape} and dtype {dtype} holding {len(raw)} bytes"
                )
            return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        items = self.field(v, "v", list)
        if len(items) != size:
            raise self.bad(f"an array of shape {shape} holding {len(items)} values")
        if dtype.kind == "U":
            if not all(isinstance(x, str) for x in items):
                raise self.bad("a text array holding other than text")
            return np.array(items, dtype=dtype).reshape(shape)
        out = np.empty(size, dtype=object)
        for i, x in enumerate(items):
            out[i] = self.node(x, depth)
        return out.reshape(shape)

    def scalar(self, v: dict[str, Any], depth: int) -> Any:
        text = self.field(v, "dtype", str)
        value = self.node(v.get("v"), depth)
        if text == "U":
            if not isinstance(value, str):
                raise self.bad("a text scalar holding other than text")
            return np.str_(value)
        dtype = self.dtype(text)
        if dtype.kind not in _NUMBER_KINDS or not isinstance(value, bool | int | float):
            raise self.bad(f"a scalar of dtype {text!r} holding {value!r}")
        return np.array(value).astype(dtype)[()]

    def obj(self, v: dict[str, Any], depth: int) -> Any:
        name = self.field(v, "cls", str)
        state = {k: self.node(x, depth) for k, x in self.field(v, "state", dict).items()}
        module_name, _, attr = name.rpartition(".")
        found = getattr(importlib.import_module(module_name), attr, None)
        if not isinstance(found, type) or f"{found.__module__}.{found.__name__}" != name:
            raise self.bad(f"the class {name!r}, which does not resolve to itself")
        cls: Any = found
        obj = cls.__new__(cls)  # as skops builds an object: no __init__, then its state
        setstate = getattr(cls, "__setstate__", None)
        if callable(setstate):
            setstate(obj, state)
        else:
            obj.__dict__.update(state)
        return obj


__all__ = ["FORMAT", "Document", "NotEncodable", "build", "dumps", "parse"]
