"""TensorFlow SavedModels a user brings (``loopml models import FOLDER``).

By default a SavedModel is converted to ONNX at import (tf2onnx) and registered as an ONNX
model (:mod:`loopml.registry.flavors.onnx`): served by ONNX Runtime, standard operators only,
no TensorFlow at serving time. Before TensorFlow's loader reads the folder, every operator of
its graphs is checked: one that reads or writes files, runs Python, or prints or summarizes
to a path (``ReadFile``, ``WriteFile``, ``PyFunc``, ``*Dataset``, ``Save*``...; the checkpoint
ops of TensorFlow's own restore function excepted) is refused, because a graph can hold
file-system ops. A graph that does not convert is refused with the reason.

Only with the explicit opt-in ``--trust tensorflow.saved_model`` (``trust=[...]``, recorded on
the version) is the folder kept as it is, as a ``savedmodel`` bundle, and run by TensorFlow
when the version is loaded; loading it again needs the same trust, which the version keeps.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loopml.errors import IntegrityError, InvalidInputError
from loopml.registry.allowlist import SAVEDMODEL_TRUST
from loopml.registry.flavors.base import Flavor, NotConvertible

MEMBER = "savedmodel.zip"
SIGNATURE = "serving_default"
#: parts of operator names that touch files, run Python, or write somewhere
_IO_PARTS = ("File", "PyFunc", "Reader", "Dataset", "Summary", "Debug", "Print", "Checkpoint")
_IO_PREFIXES = ("Save", "Restore", "ImmutableConst", "LoadAndRemap")
#: the ops TensorFlow's own restore function runs when a SavedModel is loaded
_RESTORE_OPS = frozenset({"RestoreV2"})
#: functions TensorFlow writes to save and restore variables (the save one never runs on load)
_SAVE_FN, _RESTORE_FN = "__inference__traced_save", "__inference__traced_restore"
REFUSED_HINT = (
    f"If you trust the model and its author, pass --trust {SAVEDMODEL_TRUST} "
    f"(trust=['{SAVEDMODEL_TRUST}']) to keep it as a SavedModel run by TensorFlow; the opt-in "
    "is recorded on the version"
)


def is_savedmodel(path: Path) -> bool:
    return path.is_dir() and (path / "saved_model.pb").is_file()


def io_ops(folder: Path, source: str) -> list[str]:
    """The operators of the SavedModel in ``folder`` that touch files or run Python, read
    from ``saved_model.pb`` without loading anything."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as exc:  # DecodeError for a damaged file
        raise InvalidInputError(
            f"{source}/saved_model.pb is not a SavedModel: {type(exc).__name__}",
            where={"file": f"{source}/saved_model.pb"},
            hint="Save the model with tf.saved_model.save(model, FOLDER)",
        ) from exc
    found: set[str] = set()
    for graph in proto.meta_graphs:
        groups = [("", [n.op for n in graph.graph_def.node])]
        groups += [
            (f.signature.name, [n.op for n in f.node_def]) for f in graph.graph_def.library.function
        ]
        for fn, ops in groups:
            if fn.startswith(_SAVE_FN):
                continue  # runs only when the model is saved again
            allowed = _RESTORE_OPS if fn.startswith(_RESTORE_FN) else frozenset()
            found |= {op for op in ops if _is_io(op) and op not in allowed}
    return sorted(found)


def _is_io(op: str) -> bool:
    return any(p in op for p in _IO_PARTS) or op.startswith(_IO_PREFIXES)


def savedmodel_bundle(
    folder: Path,
    *,
    task: str | None,
    trusted: Sequence[str],
    onnx_bundle: Callable[[bytes, str, list[Any] | None], Any],
    kept_bundle: Callable[[Any, str, list[Any] | None], Any],
) -> tuple[Any, str]:
    """The bundle of the SavedModel in ``folder`` and its import format: ``savedmodel-onnx``
    (converted) or ``savedmodel`` (kept, with the trust). ``onnx_bundle(data, task, classes)``
    and ``kept_bundle(model, task, classes)`` build the bundle around what it found."""
    from loopml.registry.flavors.keras import keras_module

    source = folder.name
    keep = SAVEDMODEL_TRUST in trusted
    keras_module()  # TensorFlow, quietly
    found = io_ops(folder, source)
    if found and not keep:
        raise InvalidInputError(
            f"{source} is a SavedModel whose graph holds operators that touch files or run "
            f"code ({', '.join(found)}); loopml does not load it (a graph can hold file-system "
            "ops)",
            where={"file": str(folder), "field": "operators"},
            hint=REFUSED_HINT,
        )
    if keep:
        model = SavedModel.from_folder(folder, source)
        found_task, classes = _task_of(model.width, task, source)
        return kept_bundle(model, found_task, classes), "savedmodel"
    try:
        data, width = _convert(folder, source)
    except NotConvertible as exc:
        raise InvalidInputError(
            f"{source} does not convert to ONNX: {exc}",
            where={"file": str(folder)},
            hint=REFUSED_HINT,
        ) from exc
    found_task, classes = _task_of(width, task, source)
    return onnx_bundle(data, found_task, classes), "savedmodel-onnx"


def _task_of(width: int | None, task: str | None, source: str) -> tuple[str, list[Any] | None]:
    """The task (from ``--task``, else the output's width) and the classes ``0..k-1``."""
    found = task or ("classification" if (width or 0) >= 2 else "regression")
    if found == "regression":
        if width not in (None, 1):
            raise InvalidInputError(
                f"{source} answers {width} values per row; a regressor answers one",
                where={"file": source, "field": "task"},
                hint="Pass --task classification if the outputs are class probabilities",
            )
        return found, None
    if width is None or width < 2:
        raise InvalidInputError(
            f"{source} answers {width or 'an unknown number of'} value(s) per row; a classifier "
            "answers one probability per class",
            where={"file": source, "field": "task"},
            hint="Export the model with a fixed [N, classes] probability output, or pass "
            "--task regression",
        )
    return found, list(range(width))


def _convert(folder: Path, source: str) -> tuple[bytes, int | None]:
    """tf2onnx on the folder's serving signature: the ONNX bytes and the output's width."""
    try:
        import tf2onnx
        from tf2onnx import tf_loader
    except ImportError as exc:
        raise NotConvertible("tf2onnx is not installed (pip install 'loopml[tensorflow]')") from exc
    from loopml.registry.flavors.base import ONNX_OPSET
    from loopml.registry.flavors.keras import _quiet_tf2onnx, check_converted

    try:
        with _quiet_tf2onnx():
            graph_def, inputs, outputs, _tables, renames = tf_loader.from_saved_model(
                str(folder),
                None,
                None,
                ["serve"],
                [SIGNATURE],
                return_initialized_tables=True,
                return_tensors_to_rename=True,
            )
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                input_names=inputs,
                output_names=outputs,
                opset=ONNX_OPSET,
                tensors_to_rename=renames,
            )
    except Exception as exc:  # the loader's and converter's own errors
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise NotConvertible(f"tf2onnx cannot convert it ({text})") from exc
    check_converted(proto, source)
    if len(proto.graph.output) != 1:
        names = ", ".join(o.name for o in proto.graph.output)
        raise NotConvertible(f"its {SIGNATURE} signature answers {names}; loopml takes one output")
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    width = dims[1].dim_value if len(dims) == 2 and dims[1].HasField("dim_value") else None
    if len(dims) == 1:
        width = 1
    return proto.SerializeToString(), width


class SavedModel:
    """A trusted SavedModel, loaded by TensorFlow from a private copy of its folder."""

    def __init__(self, data: bytes, what: str) -> None:
        import tensorflow as tf

        self.data = data
        self._dir = tempfile.TemporaryDirectory(prefix="loopml-savedmodel-")
        root = Path(self._dir.name)
        _unzip(data, root, what)
        try:
            loaded = tf.saved_model.load(str(root))
            fn = loaded.signatures[SIGNATURE]
        except Exception as exc:  # TensorFlow's own errors for a damaged folder
            raise IntegrityError(
                f"{what} has a SavedModel TensorFlow cannot load: {type(exc).__name__}: {exc}"[
                    :400
                ],
                where={"artifact": what, "file": MEMBER},
                hint=f"Save the model with a {SIGNATURE} signature taking one [N, features] "
                "float tensor",
            ) from exc
        args, kwargs = fn.structured_input_signature
        specs = [*args, *kwargs.values()]
        if len(specs) != 1 or len(specs[0].shape) != 2:
            raise InvalidInputError(
                f"{what}: the {SIGNATURE} signature takes {len(specs)} input(s); loopml feeds "
                "one [N, features] float tensor",
                where={"artifact": what},
                hint=f"Save the model with a {SIGNATURE} signature taking one [N, features] tensor",
            )
        self._loaded = loaded
        self._fn = fn
        self.input = next(iter(kwargs)) if kwargs else None
        self.dtype = specs[0].dtype
        self.n_features: int | None = specs[0].shape[1]
        out = fn.structured_outputs
        self.output = sorted(out)[0] if isinstance(out, dict) else None
        width = _call_shape(self, self.n_features or 1)
        self.width = width

    @classmethod
    def from_folder(cls, folder: Path, source: str) -> SavedModel:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_symlink():
                    raise InvalidInputError(
                        f"{source} holds a symbolic link ({path.relative_to(folder)})",
                        where={"file": str(path)},
                        hint="Copy the SavedModel folder without links",
                    )
                if path.is_file():
                    zf.write(path, path.relative_to(folder).as_posix())
        return cls(buf.getvalue(), source)

    def run(self, x: Any) -> np.ndarray:
        import tensorflow as tf

        tensor = tf.constant(np.ascontiguousarray(x), dtype=self.dtype)
        out = self._fn(**{self.input: tensor}) if self.input else self._fn(tensor)
        if isinstance(out, dict):
            out = out[self.output]
        return np.asarray(out.numpy(), dtype=np.float64)


def _call_shape(model: SavedModel, n: int) -> int | None:
    out = model.run(np.zeros((2, n)))
    return 1 if out.ndim == 1 else int(out.shape[1]) if out.ndim == 2 else None


def _unzip(data: bytes, root: Path, what: str) -> None:
    """The SavedModel's files under ``root``; names that would leave it are refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if not target.is_relative_to(root.resolve()) or info.is_dir():
                    if info.is_dir():
                        continue
                    raise IntegrityError(
                        f"{what} has a SavedModel file named {info.filename!r}, outside its folder",
                        where={"artifact": what, "file": MEMBER},
                        hint="The file is damaged or was not written by loopml",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
    except zipfile.BadZipFile as exc:
        raise IntegrityError(
            f"{what} has a damaged {MEMBER}",
            where={"artifact": what, "file": MEMBER},
            hint="Import the SavedModel again",
        ) from exc


class SavedModelFlavor(Flavor):
    name = "savedmodel"
    members = (MEMBER,)
    extra = "tensorflow"

    def handles(self, estimator_or_class_path: object) -> bool:
        return isinstance(estimator_or_class_path, SavedModel)

    def types(self, meta: Mapping[str, Any]) -> set[str]:
        """Loading runs the graph in TensorFlow: always needs the version's opt-in."""
        return {SAVEDMODEL_TRUST}

    def save(self, model: Any) -> dict[str, bytes]:
        return {MEMBER: model.data}

    def manifest(self, model: Any) -> dict[str, Any]:
        return {"signature": SIGNATURE, "input": model.input, "output": model.output}

    def params(self, estimator: Any) -> dict[str, Any]:
        return {"signature": SIGNATURE, "input": estimator.input, "output": estimator.output}

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        from loopml.registry.flavors.keras import keras_module

        keras_module()
        return SavedModel(members[MEMBER], what)

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        raise NotConvertible(
            f"kept as a SavedModel by --trust {SAVEDMODEL_TRUST}; served by TensorFlow"
        )

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        raw = model.run(x)
        if task == "regression":
            return raw.reshape(len(x), -1)[:, 0]
        return raw
