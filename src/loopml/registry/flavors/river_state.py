"""An online learner's state as data: canonical JSON, no pickle, allowlisted classes only.

River models pickle by default, and a pickle runs whatever code its author chose. loopml
writes an online learner (a River model or pipeline, or a scikit-learn estimator learning
with ``partial_fit``) as a tree of JSON values instead, and rebuilds it from the classes on
:data:`loopml.registry.allowlist.ONLINE` only: each object is its class's import path, its
constructor parameters and its learned attributes, each of them data.

The nodes of the tree (every other JSON value stands for itself):

=====================================  ======================================================
``{"$float": "nan"|"inf"|"-inf"}``     a float JSON cannot spell (finite floats are JSON
                                       numbers, written in their shortest exact form)
``{"$int": "123..."}``                 an integer beyond 64 bits
``{"$tuple": [...]}``                  a tuple (a JSON array is a list)
``{"$set": [...]}``                    a set or frozenset (``"frozen": true``), sorted
``{"$dict": [[k, v], ...]}``           a dict, in insertion order (River's float sums
                                       follow it); also ``$odict``, ``$counter`` and
                                       ``$defaultdict`` (with its ``factory``)
``{"$deque": [...], "maxlen": n}``     a ``collections.deque``
``{"$vectordict": [[k, v], ...]}``     River's ``utils.VectorDict``, with factory and mask
``{"$ndarray": ...}``                  a NumPy array: dtype, shape, little-endian bytes in
                                       base64 (numeric and boolean dtypes only)
``{"$npscalar": ...}``                 a NumPy scalar, alike
``{"$random": ...}``                   a ``random.Random``, by its ``getstate()``
``{"$type": "module.Name"}``           an allowlisted class used as a value (a factory)
``{"$partial": ...}``                  ``functools.partial`` of an allowlisted class
``{"$method": "name"}``                a method of the object holding it (bound again);
                                       ``$static``: a function of its class
``{"$fresh": true}``                   a value that its object's constructor builds
                                       (a lambda factory): the rebuilt object's own
``{"$object": "module.Class", ...}``   an allowlisted object: ``params`` (constructor
                                       arguments) and ``state`` (every other attribute)
``{"$pipeline": [[name, step], ...]}`` a ``river.compose.Pipeline``
=====================================  ======================================================

An object of River or scikit-learn (classes with a constructor contract) is rebuilt by
calling its class with its parameters, then given its learned attributes; any other
allowlisted class (a tree node, a statistic's helper) is created without calling its
constructor and given its attributes. An object or container held in two places (a tree's
splitter, shared by its leaves) is written once with ``"$id": n`` and then as
``{"$ref": n}``, so the rebuilt learner shares it too; an object that holds itself is refused.

The same state gives the same bytes (keys sorted, dicts in insertion order, sets sorted),
so a checksum of them names a state across processes. Anything outside the allowlist, a
function, or an object of a type the encoder does not know is an
:class:`~loopml.errors.UnsafeFormatError` naming it and where it sits; a document that is
damaged is an :class:`~loopml.errors.IntegrityError`.
"""

from __future__ import annotations

import base64
import collections
import functools
import importlib
import math
import numbers
import random
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import orjson

from loopml.errors import IntegrityError, LoopmlError, UnsafeFormatError
from loopml.registry.allowlist import ONLINE, ONLINE_NODES

#: containers and scalar types usable as factories (``defaultdict(float)``) or values
_BUILTIN_TYPES: dict[str, type] = {
    "builtins.int": int,
    "builtins.float": float,
    "builtins.bool": bool,
    "builtins.str": str,
    "builtins.list": list,
    "builtins.dict": dict,
    "builtins.set": set,
    "builtins.tuple": tuple,
    "collections.Counter": collections.Counter,
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict,
    "collections.deque": collections.deque,
    "numbers.Number": numbers.Number,  # River's SelectType(numbers.Number)
}
NODES = frozenset(ONLINE_NODES)
_DTYPE_KINDS = "biufc"  # bool, signed, unsigned, float, complex: arrays of plain numbers
_INT64 = (-(2**63), 2**63 - 1)
MAX_DEPTH = 160  # JSON levels of a document (a tree's nodes nest); deeper is refused
PIPELINE = "river.compose.pipeline.Pipeline"
VECTORDICT = "river._river_rust.vectordict.VectorDict"
#: attributes a scikit-learn estimator rebuilds itself on every ``partial_fit`` (a Cython
#: loss object, not data); left out of the state
DERIVED = frozenset({"_loss_function_"})
#: attributes left out of the state of the objects of a class and its subclasses: a River
#: distribution's generator serves ``sample()`` only (never used to learn or predict), and
#: one made without a seed starts from the operating system's entropy, so writing it would
#: make two learners fed the same events differ
UNUSED = {"river.proba.base.Distribution": frozenset({"_rng"})}


def type_name(obj_or_cls: object) -> str:
    """``module.Qualname`` of a class (or of an object's class), as the allowlist names it."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def _refuse(what: str, path: str, hint: str | None = None, name: str | None = None) -> Exception:
    return UnsafeFormatError(
        f"an online learner's state cannot hold {what} (at {path})",
        types=[name] if name else [],
        where={"field": path},
        hint=hint
        or "loopml saves online learners as data: only the River and scikit-learn classes in "
        "loopml.registry.allowlist.ONLINE, plain values and NumPy arrays. Use a covered learner "
        "(see docs/online-learners.md)",
    )


# -- encoding -----------------------------------------------------------------------------------


_MEMO: tuple[type, ...] = (list, set, frozenset, dict, collections.OrderedDict)
_MEMO += (collections.Counter, collections.defaultdict, collections.deque, random.Random)


class _Encoder:
    """One encoding: ``ids`` numbers each container and object in the order first met, so
    that a second occurrence is written ``{"$ref": n}`` (the first carries ``"$id": n``)."""

    def __init__(self) -> None:
        self.allowed = frozenset(ONLINE)
        self.ids: dict[int, int] = {}  # id() of every container/object written -> its number
        self.keep: list[Any] = []  # the objects numbered stay alive (their id()s stay theirs)
        self.active: set[int] = set()  # numbers of the nodes being written (a cycle's)
        self.refs: set[int] = set()  # numbers referred to again

    def enc(self, v: Any, path: str, owner: Any = None) -> Any:
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return v if _INT64[0] <= v <= _INT64[1] else {"$int": str(v)}
        if t is float:
            if math.isfinite(v):
                return v
            return {"$float": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if t is tuple:
            return {"$tuple": [self.enc(x, f"{path}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, np.generic):
            return {"$npscalar": _array(np.asarray(v), path)}
        if isinstance(v, type):
            return {"$type": self.class_name(v, path)}
        if t is functools.partial:
            return {
                "$partial": self.class_name(v.func, f"{path}.func"),
                "args": [self.enc(a, f"{path}.args[{i}]") for i, a in enumerate(v.args)],
                "kwargs": {k: self.enc(a, f"{path}.{k}") for k, a in sorted(v.keywords.items())},
            }
        if isinstance(v, types.MethodType):
            func = v.__func__
            if (
                owner is not None
                and v.__self__ is owner
                and getattr(type(owner), func.__name__, None) is func
            ):
                return {"$method": func.__name__}
            raise _refuse(f"the method {func.__qualname__}", path)
        if (
            isinstance(v, types.FunctionType)
            and owner is not None
            and getattr(type(owner), v.__name__, None) is v  # a static method of its class
        ):
            return {"$static": getattr(v, "__name__", "")}
        if isinstance(v, types.FunctionType | types.BuiltinFunctionType):
            raise _refuse(f"the function {getattr(v, '__qualname__', repr(v))!r}", path)
        name = type_name(v)
        plain = t in _MEMO or isinstance(v, np.ndarray) or name == VECTORDICT
        if not plain and name not in self.allowed:
            raise _refuse(f"an object of class {name}", path, name=name)
        n = self.ids.get(id(v))
        if n is not None:
            if n in self.active:
                raise _refuse(
                    f"a {type(v).__name__} that holds itself",
                    path,
                    hint="A learner whose parts refer back to themselves is not covered by the "
                    "state format",
                )
            self.refs.add(n)
            return {"$ref": n}
        n = len(self.ids)
        self.ids[id(v)] = n
        self.keep.append(v)
        self.active.add(n)
        node = self.body(v, t, name, path)
        self.active.discard(n)
        if isinstance(node, list):
            node = {"$list": node}
        node["$id"] = n
        return node

    def body(self, v: Any, t: type, name: str, path: str) -> Any:
        if t is list:
            return [self.enc(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if t is set or t is frozenset:
            items = [self.enc(x, f"{path}{{}}") for x in v]
            items.sort(key=_canonical)
            out: dict[str, Any] = {"$set": items}
            if t is frozenset:
                out["frozen"] = True
            return out
        if t is dict:
            return {"$dict": self.pairs(v, path)}
        if t is collections.OrderedDict:
            return {"$odict": self.pairs(v, path)}
        if t is collections.Counter:
            return {"$counter": self.pairs(v, path)}
        if t is collections.defaultdict:
            return {
                "$defaultdict": self.pairs(v, path),
                "factory": self.factory(v.default_factory, f"{path}.default_factory"),
            }
        if t is collections.deque:
            return {
                "$deque": [self.enc(x, f"{path}[{i}]") for i, x in enumerate(v)],
                "maxlen": v.maxlen,
            }
        if isinstance(v, np.ndarray):
            return {"$ndarray": _array(v, path)}
        if t is random.Random:
            version, internal, gauss = v.getstate()
            return {"$random": [version, list(internal), self.enc(gauss, path)]}
        if name == VECTORDICT:
            _, (data, factory, mask, _copy) = v.__reduce__()
            return {
                "$vectordict": self.pairs(data, path),
                "factory": self.factory(factory, f"{path}.default_factory"),
                "mask": self.enc(mask, f"{path}.mask"),
            }
        if name == PIPELINE:
            return {
                "$pipeline": [
                    [step, self.enc(obj, f"{path}.{step}")] for step, obj in v.steps.items()
                ]
            }
        return self.obj(v, name, path)

    def finish(self, node: Any, depth: int = 0) -> Any:
        """The tree without the ``$id`` of nodes never referred to again (and their lists as
        plain JSON arrays); UnsafeFormatError when it nests deeper than :data:`MAX_DEPTH`."""
        if depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(node, list):
            return [self.finish(x, depth + 1) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: self.finish(x, depth + 1) for k, x in node.items() if k != "$id"}
        n = node.get("$id")
        if n is not None and n in self.refs:
            out["$id"] = n
        elif "$list" in out and len(out) == 1:
            return out["$list"]
        return out

    def pairs(self, mapping: Any, path: str) -> list[list[Any]]:
        out = []
        for k, val in mapping.items():
            if type(k) not in (str, int, float, bool, tuple, type(None)):
                raise _refuse(f"a key of type {type(k).__name__}", path)
            out.append([self.enc(k, f"{path}.<key>"), self.enc(val, f"{path}[{k!r}]")])
        return out

    def factory(self, factory: Any, path: str) -> Any:
        """A default factory: data when it is a class or partial of one, else None (the
        rebuilt object's own factory is used: a lambda that its constructor makes)."""
        if factory is None:
            return {"$none": True}
        if isinstance(factory, type) or (
            type(factory) is functools.partial
            and isinstance(factory.func, type)
            and not any(_is_code(a) for a in (*factory.args, *factory.keywords.values()))
        ):
            return self.enc(factory, path)
        if isinstance(factory, types.FunctionType | types.MethodType | functools.partial):
            return None  # code: never written; the rebuilt object's constructor makes its own
        return self.enc(factory, path)  # an allowlisted object, e.g. an initializer

    def class_name(self, cls: Any, path: str) -> str:
        if not isinstance(cls, type):
            raise _refuse(f"the callable {cls!r}"[:200], path)
        name = type_name(cls)
        if name in _BUILTIN_TYPES or name in self.allowed:
            return name
        raise _refuse(f"the class {name}", path, name=name)

    def obj(self, v: Any, name: str, path: str) -> dict[str, Any]:
        cls: Any = type(v)
        attrs = dict(getattr(v, "__dict__", {}))
        for slot in _slots(cls):
            if hasattr(v, slot):
                attrs[slot] = getattr(v, slot)
        params = _param_names(cls) if _constructed(cls) else None
        out: dict[str, Any] = {"$object": name}
        state = {}
        skipped = _unused(cls)
        for key, value in sorted(attrs.items()):  # numbering of shared objects: canonical
            if key in skipped or (params is not None and key in params):
                continue
            if not isinstance(key, str) or key.startswith("$"):
                raise _refuse(f"the attribute name {key!r}", path)
            state[key] = self.attr(v, key, value, f"{path}.{key}")
        if params is not None:
            out["params"] = {
                p: self.attr(v, p, getattr(v, p), f"{path}.{p}") for p in params if hasattr(v, p)
            }
        out["state"] = state
        return out

    def attr(self, owner: Any, key: str, value: Any, path: str) -> Any:
        if isinstance(value, types.FunctionType) and value.__name__ == "<lambda>":
            return {"$fresh": True}
        return self.enc(value, path, owner=owner)


def _too_deep() -> UnsafeFormatError:
    return UnsafeFormatError(
        f"an online learner's state nests deeper than {MAX_DEPTH} levels",
        where={"field": "learner"},
        hint="A chain of objects this deep (River's EBSTSplitter, the default splitter of "
        "HoeffdingTreeRegressor, over values that arrive in order) is not covered; use "
        "params: {splitter: {class: river.tree.splitter.QOSplitter}} (loopml's default for "
        "that learner), or another learner",
    )


def _is_code(value: Any) -> bool:
    return callable(value) and not isinstance(value, type) and type_name(value) not in ONLINE


def _array(a: np.ndarray, path: str) -> dict[str, Any]:
    if a.dtype.kind not in _DTYPE_KINDS or a.dtype.hasobject:
        raise _refuse(f"a NumPy array of dtype {a.dtype}", path)
    data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    return {
        "dtype": a.dtype.newbyteorder("<").str,
        "shape": list(a.shape),
        "data": base64.b64encode(data).decode("ascii"),
    }


def _canonical(node: Any) -> bytes:
    return orjson.dumps(node, option=orjson.OPT_SORT_KEYS)


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    """The named parameters of the constructor (River's and scikit-learn's contract: each is
    kept as the attribute of the same name)."""
    import inspect

    sig = inspect.signature(cls)
    return tuple(
        n
        for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


@functools.cache
def _unused(cls: type) -> frozenset[str]:
    """The attributes of ``cls`` that are not state (:data:`DERIVED`, :data:`UNUSED`)."""
    out = set(DERIVED)
    for base in cls.__mro__:
        out |= UNUSED.get(type_name(base), frozenset())
    return frozenset(out)


@functools.cache
def _slots(cls: type) -> frozenset[str]:
    """The ``__slots__`` of a class and its bases (attributes kept outside ``__dict__``)."""
    out: set[str] = set()
    for base in cls.__mro__:
        declared = base.__dict__.get("__slots__", ())
        out.update((declared,) if isinstance(declared, str) else declared)
    return frozenset(out - {"__dict__", "__weakref__"})


@functools.cache
def _constructed(cls: type) -> bool:
    """Whether objects of ``cls`` are rebuilt by calling the class with their parameters:
    River estimators and statistics (``river.base.Base``) and scikit-learn estimators, but
    not the nodes of a tree (:data:`~loopml.registry.allowlist.ONLINE_NODES`: their
    constructors take their children, which are state)."""
    if type_name(cls) in NODES:
        return False
    return any(
        type_name(base) in ("river.base.base.Base", "sklearn.base.BaseEstimator")
        for base in cls.__mro__
    )


def encode(obj: Any, path: str = "learner") -> Any:
    """The JSON tree of ``obj`` (see the module docstring); UnsafeFormatError for anything
    the format does not hold, naming where it sits."""
    encoder = _Encoder()
    try:
        return encoder.finish(encoder.enc(obj, path))
    except RecursionError as exc:
        raise _too_deep() from exc


def dumps(document: Any) -> bytes:
    """Canonical JSON of an encoded tree: keys sorted, no spaces; same tree, same bytes."""
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # text that is not valid Unicode
        raise _refuse(f"a value JSON cannot hold ({exc})", "learner") from exc


# -- decoding -----------------------------------------------------------------------------------


def _damaged(detail: str, path: str) -> IntegrityError:
    return IntegrityError(
        f"an online learner's state is damaged: {detail} (at {path})"[:500],
        where={"field": path},
        hint="The checkpoint was not written by this loopml or was changed since; use another "
        "checkpoint or start the learner again",
    )


_MISSING = object()


class _Decoder:
    def __init__(self, root: Any) -> None:
        self.allowed = frozenset(ONLINE)
        self.shared: dict[int, Any] = {}  # "$id" -> its node in the document
        self.built: dict[int, Any] = {}  # "$id" -> the object rebuilt from it
        self.active: set[int] = set()
        self.index(root, 0)

    def index(self, node: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _damaged(f"nesting deeper than {MAX_DEPTH}", "learner")
        if isinstance(node, list):
            for x in node:
                self.index(x, depth + 1)
        elif isinstance(node, dict):
            n = node.get("$id")
            if n is not None:
                if not isinstance(n, int) or isinstance(n, bool) or n in self.shared:
                    raise _damaged(f"the node number {n!r}", "learner")
                self.shared[n] = node
            for x in node.values():
                self.index(x, depth + 1)

    def ref(self, n: Any, path: str, depth: int) -> Any:
        if not isinstance(n, int) or isinstance(n, bool) or n not in self.shared:
            raise _damaged(f"a reference to node {n!r}, which is not there", path)
        if n in self.built:
            return self.built[n]
        if n in self.active:
            raise _damaged(f"node {n} refers to itself", path)
        return self.dec(self.shared[n], path, depth)

    def cls(self, name: Any, path: str) -> type:
        if not isinstance(name, str):
            raise _damaged(f"a class name that is {type(name).__name__}", path)
        builtin = _BUILTIN_TYPES.get(name)
        if builtin is not None:
            return builtin
        if name not in self.allowed:
            raise _refuse(f"an object of class {name}", path, name=name)
        module_name, _, attr = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise IntegrityError(
                f"an online learner's state names {name}, which this installation lacks",
                where={"field": path},
                hint="Install the River or scikit-learn version the learner was saved with",
            ) from exc
        if not isinstance(found, type) or type_name(found) != name:
            raise _damaged(f"{name} is not the class it was", path)
        return found

    def dec(self, node: Any, path: str, depth: int, template: Any = _MISSING) -> Any:
        if depth > MAX_DEPTH:
            raise _damaged(f"nesting deeper than {MAX_DEPTH}", path)
        if node is None or isinstance(node, bool | str | int | float):
            return node
        d = depth + 1
        if isinstance(node, list):
            return [self.dec(x, f"{path}[{i}]", d) for i, x in enumerate(node)]
        if not isinstance(node, dict) or not node:
            raise _damaged(f"a node of type {type(node).__name__}", path)
        if "$ref" in node:
            return self.ref(node["$ref"], path, d)
        n = node.get("$id")
        if n is None:
            return self.node(node, path, d, template)
        if n in self.built:
            return self.built[n]
        if n in self.active:
            raise _damaged(f"node {n} refers to itself", path)
        self.active.add(n)
        value = self.node(node, path, d, template)
        self.active.discard(n)
        self.built[n] = value
        return value

    def node(self, node: dict[str, Any], path: str, d: int, template: Any) -> Any:
        tag = next((k for k in node if k.startswith("$") and k != "$id"), None)
        if tag == "$list":
            return [self.dec(x, f"{path}[{i}]", d) for i, x in enumerate(_list(node, tag, path))]
        if tag == "$float":
            value = node[tag]
            if value not in ("nan", "inf", "-inf"):
                raise _damaged(f"the float {value!r}", path)
            return float(value)
        if tag == "$int":
            return int(_text(node[tag], path))
        if tag == "$tuple":
            return tuple(
                self.dec(x, f"{path}[{i}]", d) for i, x in enumerate(_list(node, tag, path))
            )
        if tag == "$set":
            items = [self.dec(x, path, d) for x in _list(node, tag, path)]
            return frozenset(items) if node.get("frozen") else set(items)
        if tag in ("$dict", "$odict", "$counter", "$defaultdict", "$vectordict"):
            return self.mapping(node, tag, path, d, template)
        if tag == "$deque":
            maxlen = node.get("maxlen")
            if maxlen is not None and (not isinstance(maxlen, int) or maxlen < 0):
                raise _damaged(f"a deque of maxlen {maxlen!r}", path)
            items = [self.dec(x, f"{path}[{i}]", d) for i, x in enumerate(_list(node, tag, path))]
            return collections.deque(items, maxlen=maxlen)
        if tag == "$ndarray":
            return _from_array(node[tag], path)
        if tag == "$npscalar":
            return _from_array(node[tag], path)[()]
        if tag == "$random":
            state = _list(node, tag, path)
            if len(state) != 3 or not isinstance(state[1], list):
                raise _damaged("a random generator state", path)
            rng = random.Random()
            try:
                rng.setstate((state[0], tuple(state[1]), self.dec(state[2], path, d)))
            except (TypeError, ValueError) as exc:
                raise _damaged(f"a random generator state ({exc})", path) from exc
            return rng
        if tag == "$type":
            return self.cls(node[tag], path)
        if tag == "$partial":
            func = self.cls(node[tag], path)
            args = [self.dec(a, path, d) for a in _list(node, "args", path)]
            kwargs = node.get("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise _damaged("partial arguments", path)
            return functools.partial(
                func, *args, **{k: self.dec(a, path, d) for k, a in kwargs.items()}
            )
        if tag == "$pipeline":
            from river import compose

            self.cls(PIPELINE, path)
            steps = []
            for item in _list(node, tag, path):
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise _damaged("a pipeline step", path)
                steps.append((item[0], self.dec(item[1], f"{path}.{item[0]}", d)))
            return compose.Pipeline(*steps)
        if tag == "$object":
            return self.obj(node, path, d)
        if tag in ("$fresh", "$method", "$static", "$none"):
            raise _damaged(f"{tag} outside an object's attributes", path)
        raise _damaged(f"an unknown node {sorted(node)[:3]}", path)

    def mapping(self, node: dict[str, Any], tag: str, path: str, d: int, template: Any) -> Any:
        pairs = _list(node, tag, path)
        out: Any
        child_template: Callable[[], Any] | None = None
        if tag == "$dict":
            out = {}
        elif tag == "$odict":
            out = collections.OrderedDict()
        elif tag == "$counter":
            out = collections.Counter()
        elif tag == "$defaultdict":
            factory = self.factory(node.get("factory"), path, d, template)
            out = collections.defaultdict(factory)
            child_template = factory
        else:
            from river.utils import VectorDict

            self.cls(VECTORDICT, path)
            factory = self.factory(node.get("factory"), path, d, template)
            mask = self.dec(node.get("mask"), f"{path}.mask", d)
            data = {}
            for k, v in self._pairs(pairs, path, d, None):
                data[k] = v
            try:
                return VectorDict(data, factory, mask)
            except (TypeError, ValueError) as exc:
                raise _damaged(f"a VectorDict ({exc})", path) from exc
        for k, v in self._pairs(pairs, path, d, child_template):
            out[k] = v
        return out

    def _pairs(
        self, pairs: list[Any], path: str, d: int, factory: Callable[[], Any] | None
    ) -> Iterable[tuple[Any, Any]]:
        for item in pairs:
            if not (isinstance(item, list) and len(item) == 2):
                raise _damaged("a mapping entry that is not [key, value]", path)
            key = self.dec(item[0], f"{path}.<key>", d)
            try:
                hash(key)
            except TypeError as exc:
                raise _damaged(f"an unhashable key {key!r}"[:200], path) from exc
            template = _MISSING
            if factory is not None and isinstance(item[1], dict) and "$defaultdict" in item[1]:
                template = factory()  # a nested defaultdict: the factory that made it
            yield key, self.dec(item[1], f"{path}[{key!r}]", d, template)

    def factory(self, node: Any, path: str, d: int, template: Any) -> Any:
        if node is None:  # the object's own factory (a lambda its constructor makes)
            factory = getattr(template, "default_factory", _MISSING)
            if factory is _MISSING:
                raise _damaged("a default factory that nothing rebuilt", path)
            return factory
        if isinstance(node, dict) and node.get("$none") is True:
            return None
        value = self.dec(node, f"{path}.default_factory", d)
        if not callable(value):
            raise _damaged("a default factory that cannot be called", path)
        return value

    def obj(self, node: dict[str, Any], path: str, d: int) -> Any:
        name = node["$object"]
        if not isinstance(name, str) or name not in self.allowed:
            raise _refuse(f"an object of class {name!r}", path, name=str(name))
        cls = self.cls(name, path)
        state = node.get("state")
        params = node.get("params")
        if not isinstance(state, dict) or (params is not None and not isinstance(params, dict)):
            raise _damaged(f"an object {node['$object']} without state", path)
        kwargs: dict[str, Any] = {}
        if params is not None:
            if not _constructed(cls):
                raise _damaged(f"parameters for {node['$object']}, which takes none", path)
            for k, v in params.items():
                if not isinstance(v, dict) or not ({"$fresh", "$method", "$static"} & set(v)):
                    kwargs[k] = self.dec(v, f"{path}.{k}", d)
            try:
                obj = cls(**kwargs)
            except Exception as exc:  # the class's own checks of its parameters
                raise _damaged(f"{node['$object']} refused its parameters: {exc}", path) from exc
            fresh = dict(vars(obj))
        else:
            obj = object.__new__(cls)
            fresh = {}
        attrs = dict(kwargs)
        for k, v in [*(params or {}).items(), *state.items()]:
            if not isinstance(k, str) or k.startswith("$"):
                raise _damaged(f"the attribute name {k!r}", path)
            if k not in kwargs:
                attrs[k] = self.attr(obj, k, v, fresh, f"{path}.{k}", d)
        unused = _unused(cls)
        for k in [k for k in fresh if k not in attrs and k not in unused]:
            del vars(obj)[k]  # gone from the learned object (e.g. a cache it dropped)
        slots = _slots(cls)
        for k, v in attrs.items():
            if k in slots:
                object.__setattr__(obj, k, v)
            elif hasattr(obj, "__dict__"):
                vars(obj)[k] = v
            else:
                raise _damaged(f"{k} is not an attribute of {node['$object']}", path)
        return obj

    def attr(self, obj: Any, key: str, node: Any, fresh: dict[str, Any], path: str, d: int) -> Any:
        if isinstance(node, dict) and node.get("$fresh") is True:
            if key not in fresh:
                raise _damaged(f"{key} is not built by its constructor", path)
            return fresh[key]
        if isinstance(node, dict) and "$method" in node:
            name = node["$method"]
            method = getattr(type(obj), name, None) if isinstance(name, str) else None
            if not isinstance(method, types.FunctionType):
                raise _damaged(f"{name!r} is not a method of {type_name(obj)}", path)
            return types.MethodType(method, obj)
        if isinstance(node, dict) and "$static" in node:
            name = node["$static"]
            func = getattr(type(obj), name, None) if isinstance(name, str) else None
            if not isinstance(func, types.FunctionType):
                raise _damaged(f"{name!r} is not a function of {type_name(obj)}", path)
            return func
        return self.dec(node, path, d, fresh.get(key, _MISSING))


def _list(node: dict[str, Any], key: str, path: str) -> list[Any]:
    value = node.get(key)
    if not isinstance(value, list):
        raise _damaged(f"{key} that is not a list", path)
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.lstrip("-").isdigit():
        raise _damaged(f"the integer {value!r}"[:200], path)
    return value


def _from_array(spec: Any, path: str) -> np.ndarray:
    if not isinstance(spec, dict):
        raise _damaged("an array that is not an object", path)
    try:
        dtype = np.dtype(str(spec["dtype"]))
        shape = tuple(int(n) for n in spec["shape"])
        raw = base64.b64decode(spec["data"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(f"an array ({exc})", path) from exc
    if dtype.kind not in _DTYPE_KINDS or dtype.hasobject or any(n < 0 for n in shape):
        raise _damaged(f"an array of dtype {dtype} and shape {shape}", path)
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise _damaged(f"an array of shape {shape} with {len(raw)} bytes", path)
    out = np.frombuffer(raw, dtype=dtype).reshape(shape)
    native = dtype.newbyteorder("=")
    return out.astype(native) if sys.byteorder != "little" else out.copy()


def decode(node: Any, path: str = "learner") -> Any:
    """Rebuild the object of an encoded tree, importing only allowlisted classes."""
    try:
        return _Decoder(node).dec(node, path, 0)
    except LoopmlError:
        raise
    except RecursionError as exc:
        raise _damaged("nesting too deep", path) from exc
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # a value of the wrong kind where an object expects another (an int of 5,000
        # digits, attributes for a class without them)
        raise _damaged(f"{type(exc).__name__}: {exc}", path) from exc


def loads(data: bytes) -> Any:
    """The tree of canonical JSON bytes; IntegrityError when they are not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _damaged(f"not JSON ({exc})", "learner") from exc


__all__ = ["DERIVED", "MAX_DEPTH", "decode", "dumps", "encode", "loads", "type_name"]
