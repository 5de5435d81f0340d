"""Crafted model artifacts, as an attacker would write them, for the tests of safe loading.

Each starts from what skops itself writes for real objects and edits the ``schema.json``
inside the skops zip; the result is zipped into an otherwise genuine loopml bundle. Every
payload would create ``marker`` if it ran.
"""

from __future__ import annotations

import functools
import io
import json
import shlex
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from loopml.registry import ModelBundle
from loopml.stores.records import ModelVersion
from loopml.train import fit_bundle
from loopml.utils import utcnow
from loopml.workspace import Workspace

FT = "sklearn.preprocessing._function_transformer.FunctionTransformer"


def cancer_frame() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def genuine() -> tuple[ModelBundle, pd.DataFrame]:
    """A real bundle (logistic regression on the breast-cancer data) and its features."""
    return fit_bundle(cancer_frame(), "target", LogisticRegression(max_iter=1000))


def python_code(marker: Path) -> str:
    # a lambda body reads names from the globals, so exec(code, {}, anything) runs it
    return f"(lambda: open({str(marker)!r}, 'w').close())()"


def replace_member(bundle: bytes, member: str, payload: bytes) -> bytes:
    """``bundle`` with the file ``member`` replaced (or added).

    A crafted ``features.skops`` takes the place of the feature pipeline: the manifest names
    it, and the genuine ``features.json`` is left out, as an attacker would write it."""
    src = zipfile.ZipFile(io.BytesIO(bundle))
    buf = io.BytesIO()
    skops_features = member == "features.skops"
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            if name == member or (skops_features and name == "features.json"):
                continue
            data = src.read(name)
            if skops_features and name == "manifest.json":
                manifest = json.loads(data)
                manifest["features"] = "features.skops"
                data = json.dumps(manifest).encode()
            dst.writestr(name, data)
        dst.writestr(member, payload)
    return buf.getvalue()


def member(bundle: bytes, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(bundle)).read(name)


def edit_schema(skops_file: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The skops file with its schema.json changed in place by ``edit``."""
    src = zipfile.ZipFile(io.BytesIO(skops_file))
    schema = json.loads(src.read("schema.json"))
    edit(schema)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = json.dumps(schema).encode() if name == "schema.json" else src.read(name)
            dst.writestr(name, data)
    return buf.getvalue()


def nodes(tree: Any) -> list[dict[str, Any]]:
    """Every node of a skops schema, depth first."""
    found: list[dict[str, Any]] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _string_tuple(*values: str) -> dict[str, Any]:
    items = [
        {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
         "content": json.dumps(v), "is_json": True}
        for v in values
    ]  # fmt: skip
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
            "content": items}  # fmt: skip


def exec_pipeline(marker: Path) -> bytes:
    """A Pipeline of FunctionTransformers ending in ``builtins.exec``, then the genuine
    estimator, written by skops's own ``dumps``; its code runs on the first predict.

    Every name in it starts with ``numpy.``, ``builtins.`` or ``sklearn.`` (the prefixes once
    trusted): the rows become copies of the code, one string is picked, and exec runs it.
    """
    bundle, _ = genuine()
    steps = [
        (np.full_like, {"fill_value": python_code(marker), "dtype": object}),
        (np.ravel, None),
        (max, None),
        (exec, None),
    ]
    pipe = Pipeline(
        [(f"f{i}", FunctionTransformer(func=f, kw_args=kw)) for i, (f, kw) in enumerate(steps)]
        + [("model", bundle.estimator)]
    )
    return replace_member(bundle.to_bytes(), "model.skops", sio.dumps(pipe))


def _reduce_node(module: str, name: str, *args: str) -> dict[str, Any]:
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": _string_tuple(*args)}  # fmt: skip


def reduce_call(marker: Path, module: str = "builtins", name: str = "exec") -> bytes:
    """A real FunctionTransformer's skops file whose ``func`` node is edited into a
    ``ConstructorFromReduceNode`` calling ``module.name`` (runs when the file is loaded)."""
    bundle, _ = genuine()
    arg = python_code(marker) if name in ("exec", "eval") else f"touch {shlex.quote(str(marker))}"
    ft = sio.dumps(Pipeline([("f", FunctionTransformer(func=np.log1p)), ("m", bundle.estimator)]))

    def edit(schema: dict[str, Any]) -> None:
        for node in nodes(schema):
            content = node.get("content")
            if node.get("__class__") == "FunctionTransformer" and isinstance(content, dict):
                content["content"]["func"] = _reduce_node(module, name, arg)

    return replace_member(bundle.to_bytes(), "model.skops", edit_schema(ft, edit))


def function_node(marker: Path) -> bytes:
    """The feature pipeline's skops file with a FunctionTransformer's ``func`` renamed from
    ``numpy.log1p`` to ``os.system`` (a FunctionNode: imported when the file is loaded)."""
    bundle, _ = genuine()
    ft = sio.dumps(Pipeline([("f", FunctionTransformer(func=np.log1p)), ("ct", bundle.features)]))

    def edit(schema: dict[str, Any]) -> None:
        for node in nodes(schema):
            if node.get("__module__") == "numpy" and node.get("__class__") == "log1p":
                node["__module__"], node["__class__"] = "os", "system"

    return replace_member(bundle.to_bytes(), "features.skops", edit_schema(ft, edit))


def store(ws: Workspace, name: str, data: bytes, signature: dict[str, Any]) -> ModelVersion:
    """Put ``data`` in the artifact store (so its sha256 is right) and record a version."""
    sha = ws.artifacts.put(data)
    draft = ModelVersion(
        name=name,
        version=0,
        run_id="crafted",
        artifact_sha256=sha,
        flavor="sklearn",
        signature=signature,
        metrics={},
        dataset_name=None,
        dataset_version=None,
        created_at=utcnow(),
        size_bytes=len(data),
    )
    return ws.metadata.add_model_version(draft)


CRAFTED: dict[str, tuple[Callable[[Path], bytes], str]] = {
    # name: (maker, a type name the refusal must mention)
    "exec-pipeline": (exec_pipeline, "builtins.exec"),
    "reduce-exec": (reduce_call, "builtins.exec"),
    "reduce-os-system": (functools.partial(reduce_call, module="os", name="system"), "os.system"),
    "function-os-system": (function_node, "os.system"),
}
