"""PyTorch networks: weights in safetensors, the architecture as declared data.

A bundle holds ``model.safetensors`` (the network's ``state_dict``, nothing else: safetensors
cannot hold code) and, in the manifest, the architecture (a class path and its constructor
arguments as JSON), the task and the regression target's scale. Loading imports the class
only when it is one loopml declares (:data:`loopml.registry.allowlist.TORCH`) or one the
version trusts (a user's ``torch.nn.Module``, by import path, registered with
``trust: [its.path.Class]``), and loads the weights with ``strict=True``: a file whose tensors
do not fit the architecture is an IntegrityError. No ``torch.load`` anywhere.

Torch is imported only when a torch model is trained, loaded, compiled or predicted (this
module is imported by the flavor table, which ``import loopml`` may touch).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import IntegrityError
from loopml.registry.flavors.base import ONNX_OPSET, Flavor, NotConvertible, class_path

MEMBER = "model.safetensors"
#: the estimators of this flavor (model.class), by module prefix
ESTIMATOR_PREFIX = "loopml.train.deep."
MODEL_PREFIX = "loopml.registry.flavors.torch_nets."


class TorchFlavor(Flavor):
    name = "torch"
    roots = ("loopml",)  # model.class names loopml's own torch estimators (loopml.train.deep)
    members = (MEMBER,)
    extra = "torch"

    def handles(self, estimator_or_class_path: object) -> bool:
        path = class_path(estimator_or_class_path)
        return path.startswith((ESTIMATOR_PREFIX, MODEL_PREFIX))

    def prepare(self, estimator: Any) -> Any:
        return getattr(estimator, "model_", estimator)

    def steps(self, model: Any) -> list[tuple[str, int, float]]:
        """The per-epoch metrics of the fit that made ``model``: ``(key, epoch, value)``."""
        out = []
        for epoch, row in enumerate(getattr(model, "history", None) or []):
            out += [(f"epoch.{k}", epoch, float(v)) for k, v in row.items()]
        return out

    def types(self, meta: Mapping[str, Any]) -> set[str]:
        """The class paths a bundle of this flavor imports when loaded (the bundle refuses
        any that is neither declared nor trusted, before anything is imported)."""
        arch = meta.get("architecture")
        cls = arch.get("class") if isinstance(arch, Mapping) else None
        return {cls} if isinstance(cls, str) else set()

    # -- bytes ----------------------------------------------------------------------------

    def save(self, model: Any) -> dict[str, bytes]:
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
        return {MEMBER: save(state)}

    def manifest(self, model: Any) -> dict[str, Any]:
        return {
            "architecture": model.architecture,
            "task": model.task,
            "y_mean": model.y_mean,
            "y_scale": model.y_scale,
            "weights": MEMBER,
        }

    def load(
        self,
        members: Mapping[str, bytes],
        *,
        trusted: Sequence[str],
        what: str,
        meta: Mapping[str, Any],
        checked: Mapping[str, set[str]] | None = None,
    ) -> Any:
        from loopml.registry.safeload import refused_names, unsafe

        arch = meta.get("architecture")
        if not isinstance(arch, dict) or not isinstance(arch.get("class"), str):
            raise IntegrityError(
                f"{what} has no torch architecture in its manifest",
                where={"artifact": what, "file": "manifest.json"},
                hint="The file is damaged or was not written by loopml; retrain the model",
            )
        refused = refused_names([arch["class"]], trusted)
        if refused:
            raise unsafe(refused, what)
        from safetensors.torch import load

        from loopml.registry.flavors.torch_nets import TorchModel, build

        try:
            net = build(arch)
        except (ValueError, TypeError) as exc:
            raise IntegrityError(
                f"{what} names architecture {arch['class']} that cannot be built: {exc}"[:400],
                where={"artifact": what, "file": "manifest.json"},
                hint="Install the package that defines the module, or retrain the model",
            ) from exc
        try:
            state = load(members[MEMBER])
        except Exception as exc:  # safetensors' own errors for a damaged header
            raise IntegrityError(
                f"{what} has weights that are not a safetensors file: {exc}"[:400],
                where={"artifact": what, "file": MEMBER},
                hint="The file is damaged; retrain the model",
            ) from exc
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise IntegrityError(
                f"{what}: the weights do not match the architecture {arch['class']}: "
                f"{' '.join(str(exc).split())}"[:500],
                where={"artifact": what, "file": MEMBER},
                hint="The checkpoint was saved from another architecture or other arguments; "
                "retrain the model",
            ) from exc
        net.eval()
        task = str(meta.get("task", "classification"))
        return TorchModel(
            net,
            arch,
            task,
            y_mean=float(meta.get("y_mean", 0.0)),
            y_scale=float(meta.get("y_scale", 1.0)),
        )

    # -- compiling ------------------------------------------------------------------------

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """torch.onnx's TorchScript exporter (runs offline): the double network of
        :meth:`TorchModel.head`, double input ``[N, n]``, the softmax probabilities or the
        unscaled value out."""
        import onnx
        import torch

        head = model.head()
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    head,
                    (torch.zeros(2, n_features, dtype=torch.float64),),
                    buf,  # type: ignore[arg-type]  # a file object works (torch's docs)
                    input_names=["x"],
                    output_names=["y"],
                    dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                    opset_version=ONNX_OPSET,
                    dynamo=False,
                )
        except Exception as exc:  # the exporter's own errors for operators it lacks
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise NotConvertible(f"torch.onnx cannot export this network ({text})") from exc
        _check_kernels(buf.getvalue())
        return onnx.load_from_string(buf.getvalue()), "y"

    # -- predicting -----------------------------------------------------------------------

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        out: np.ndarray = model.predict(x)
        return out


def _check_kernels(data: bytes) -> None:
    """NotConvertible when ONNX Runtime lacks a double kernel the graph needs (it has no
    double ``Conv`` on the CPU): such a network is served natively, in double."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's NOT_IMPLEMENTED for an operator and type it lacks
        text = " ".join(str(exc).split())
        op = (
            text.split("implementation for ")[-1].split(" node")[0]
            if "implementation" in text
            else ""
        )
        raise NotConvertible(
            f"ONNX Runtime has no double-precision kernel for {op or 'an operator'} of this network"
        ) from exc
