"""PyTorch networks: weights in safetensors, the architecture as declared data.

A bundle holds ``model.safetensors`` (the network's ``state_dict``, nothing else: safetensors
cannot hold code) and, in the manifest, the architecture (a class path and its constructor
arguments as JSON), the task and the regression target's scale. Loading imports the class
only when it is one loopml declares (:data:`loopml.registry.allowlist.TORCH`) or one the
version trusts (a user's ``torch.nn.Module``, by import path, registered with
``trust: [its.path.Class]``), and loads the weights with ``strict=True``: a file whose tensors
do not fit the architecture is an IntegrityError. No ``torch.load`` anywhere.

A version trained by loopml's loop also holds ``optimizer.safetensors``: Adam's state after its
last epoch (each parameter's step count and moments, tensors only), described in the manifest
(``model.optimizer``: the kind, the step count, the parameters' names, the settings). Loading
does not read it (serving never needs it); a version loaded from a workspace reads it again
from the artifact store when a fine-tune asks (:meth:`TorchFlavor.attach_source`), and the
fine-tune checks it against its network before using it
(:mod:`loopml.train.deep.finetune`).

Torch is imported only when a torch model is trained, loaded, compiled or predicted (this
module is imported by the flavor table, which ``import loopml`` may touch).
"""

from __future__ import annotations

import copy
import functools
import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from loopml.errors import IntegrityError
from loopml.registry.flavors.base import ONNX_OPSET, NetworkFlavor, NotConvertible, class_path

MEMBER = "model.safetensors"
#: Adam's state after the fit (read only by a fine-tune, never when loaded)
OPTIMIZER = "optimizer.safetensors"
#: the estimators of this flavor (model.class), by module prefix
ESTIMATOR_PREFIX = "loopml.train.deep."
MODEL_PREFIX = "loopml.registry.flavors.torch_nets."
RECOMMENDER = "loopml.train.deep.MFRecommender"
CNN = "loopml.registry.flavors.torch_nets.SmallCNN"


class TorchFlavor(NetworkFlavor):
    name = "torch"
    roots = ("loopml",)  # model.class names loopml's own torch estimators (loopml.train.deep)
    members = (MEMBER,)
    extra = "torch"
    continues = "MLP, CNN and module networks, from the parent's weights"
    #: the compiled check's tolerance (the issue's 1e-5): a CNN's graph runs in float32
    onnx_tolerance = 1e-5
    needs_every_class = False  # the parent's classes are kept, in its order

    def handles(self, estimator_or_class_path: object) -> bool:
        path = class_path(estimator_or_class_path)
        if path == RECOMMENDER:  # the recommender flavor's (torch_recommender.py)
            return False
        return path.startswith((ESTIMATOR_PREFIX, MODEL_PREFIX))

    def prepare(self, estimator: Any) -> Any:
        return getattr(estimator, "model_", estimator)

    def can_continue(self, cls: type) -> bool:
        return f"{cls.__module__}.{cls.__name__}".startswith("loopml.train.deep.estimators.")

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
        out = {MEMBER: save(state)}
        opt = getattr(model, "optimizer", None)
        if opt is not None:
            out[OPTIMIZER] = save(opt.tensors)
        return out

    def manifest(self, model: Any) -> dict[str, Any]:
        out = {
            "architecture": model.architecture,
            "task": model.task,
            "y_mean": model.y_mean,
            "y_scale": model.y_scale,
            "weights": MEMBER,
        }
        threads = getattr(model, "threads", None)
        if threads is not None:  # model.params.threads: what it predicts on natively too
            out["threads"] = int(threads)
        opt = getattr(model, "optimizer", None)
        if opt is not None:
            out["optimizer"] = {**opt.meta, "file": OPTIMIZER}
        return out

    def attach_source(self, model: Any, read: Callable[[], bytes], what: str) -> None:
        """Let ``model`` (loaded from a bundle that ``read`` gives again, from the artifact
        store) read its optimizer state when a fine-tune asks, not before."""
        opt = getattr(model, "optimizer_meta", None)
        if isinstance(opt, dict) and getattr(model, "optimizer", None) is None:
            model.saved_optimizer = functools.partial(_read_optimizer, read, opt, what)

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
        threads = meta.get("threads")
        if threads is not None and (
            not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 1024
        ):
            raise IntegrityError(
                f"{what} has threads {threads!r} in its manifest, not a count of threads",
                where={"artifact": what, "file": "manifest.json"},
                hint="The file is damaged or was not written by loopml; retrain the model",
            )
        opt = meta.get("optimizer")
        return TorchModel(
            net,
            arch,
            task,
            y_mean=float(meta.get("y_mean", 0.0)),
            y_scale=float(meta.get("y_scale", 1.0)),
            threads=threads,
            # the file itself is read only by a fine-tune (attach_source)
            optimizer_meta=dict(opt) if isinstance(opt, Mapping) else None,
        )

    # -- compiling ------------------------------------------------------------------------

    def to_onnx(self, model: Any, n_features: int, task: str) -> tuple[Any, str]:
        """torch.onnx's TorchScript exporter (runs offline): the double network of
        :meth:`TorchModel.head`, double input ``[N, n]``, the softmax probabilities or the
        unscaled value out. Where ONNX Runtime lacks a double kernel the network needs (it
        has no double ``Conv`` on the CPU: a CNN), the float32 network (its trained weights,
        exactly) with float input instead; the compiled check then holds it to the usual
        tolerance against the double native model (:attr:`onnx_tolerance`: probabilities
        within 1e-5, regression values within 1e-5 relative), and a network that misses it
        is served natively."""
        import onnx
        import torch

        data = _export(model.head(), n_features, torch.float64)
        try:
            _check_kernels(data)
        except NotConvertible as double:
            from loopml.registry.flavors.torch_nets import Head

            net = copy.deepcopy(model.net).cpu().float().eval()
            head = Head(net, model.task, model.y_mean, model.y_scale).eval()
            data = _export(head, n_features, torch.float32)
            try:
                _check_kernels(data)
            except NotConvertible:
                raise double from None
        return onnx.load_from_string(data), "y"

    # -- tensors ----------------------------------------------------------------------------

    def tensor_input(self, model: Any, n_inputs: int) -> Any:
        """The image tensor a CNN version also takes (``[n, channels, height, width]``
        FP32, its pixels the ``n_inputs`` signature inputs in order), else None."""
        from loopml.registry.signature import TensorSpec

        arch = getattr(model, "architecture", None) or {}
        if arch.get("class") != CNN:
            return None
        args = arch.get("args") or {}
        shape = tuple(int(args.get(k, 0)) for k in ("channels", "height", "width"))
        if not all(shape) or shape[0] * shape[1] * shape[2] != n_inputs:
            return None
        return TensorSpec("image", shape, "FP32")

    # -- predicting -----------------------------------------------------------------------

    def predict(self, model: Any, x: Any, task: str) -> np.ndarray:
        out: np.ndarray = model.predict(x)
        return out


def _read_optimizer(read: Callable[[], bytes], meta: dict[str, Any], what: str) -> Any:
    """The optimizer state of a version's bundle (tensors only, no pickle), as described by
    its manifest's ``meta``; the fine-tune checks it against its network
    (:func:`loopml.train.deep.finetune.adam_reason`)."""
    from safetensors.torch import load

    from loopml.registry.bundle import bundle_member
    from loopml.registry.flavors.torch_nets import OptimizerState

    data = bundle_member(read(), OPTIMIZER, what)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors' own errors for a damaged header
        raise IntegrityError(
            f"{what} has an optimizer state that is not a safetensors file: {exc}"[:400],
            where={"artifact": what, "file": OPTIMIZER},
            hint="The file is damaged; fine-tune with a fresh optimizer, or retrain",
        ) from exc
    return OptimizerState(meta, tensors)


def _export(head: Any, n_features: int, dtype: Any) -> bytes:
    """``head`` exported to ONNX with input ``x`` ``[N, n_features]`` of ``dtype``."""
    import torch

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (torch.zeros(2, n_features, dtype=dtype),),
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
    return buf.getvalue()


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
