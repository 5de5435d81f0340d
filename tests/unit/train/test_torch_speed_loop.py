"""The training loop's speed choices keep its results: fused Adam, the epoch loss summed on
the device (benchmarks/bench_torch.py measures the speed; these check what it computes)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from loopml.registry.flavors.torch_nets import build  # noqa: E402
from loopml.train.deep.loop import LoopSettings, adam, fit_network  # noqa: E402

ARCH = {
    "class": "loopml.registry.flavors.torch_nets.MLP",
    "args": {"n_in": 6, "n_out": 2, "hidden": [8], "dropout": 0.0},
}


def _settings(**kw: object) -> LoopSettings:
    base = dict(
        epochs=2, lr=1e-2, batch_size=32, patience=0, validation_fraction=0.0,
        weight_decay=0.0, seed=3, device="cpu", checkpoint_dir=None, progress=False,
        threads=1,
    )  # fmt: skip
    base.update(kw)
    return LoopSettings(**base)  # type: ignore[arg-type]


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def _reference(x: np.ndarray, y: np.ndarray, s: LoopSettings) -> tuple[object, list[float]]:
    """The loop written plainly: unfused Adam, the loss read after every batch."""
    torch.manual_seed(0)
    net = build(ARCH)
    opt = torch.optim.Adam(net.parameters(), lr=s.lr, foreach=False, fused=False)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(s.seed)
    rows = torch.arange(len(x))
    losses = []
    for _ in range(s.epochs):
        net.train()
        total = 0.0
        for idx in rows[torch.randperm(len(rows), generator=gen)].split(s.batch_size):
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    return net, losses


def test_the_loop_steps_with_fused_adam_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[dict[str, object]] = []
    real = torch.optim.Adam

    def spy(*args: object, **kwargs: object) -> object:
        made.append(dict(kwargs))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.optim, "Adam", spy)
    x, y = _data()
    torch.manual_seed(0)
    fit_network(build(ARCH), x, y, task="classification", settings=_settings(epochs=1))
    assert made and made[0].get("fused") is True


def test_fused_adam_gives_the_plain_loops_weights_and_losses() -> None:
    x, y = _data()
    s = _settings()
    want_net, want_losses = _reference(x, y, s)
    torch.manual_seed(0)
    net = build(ARCH)
    history = fit_network(net, x, y, task="classification", settings=s)
    got = [row["train_loss"] for row in history]
    np.testing.assert_allclose(got, want_losses, rtol=1e-5)
    for a, b in zip(net.state_dict().values(), want_net.state_dict().values(), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_adam_falls_back_where_no_fused_kernel_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.optim.Adam

    def no_fused(*args: object, **kwargs: object) -> object:  # a device without the kernel
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be on a device it has")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    assert adam(torch.nn.Linear(3, 1), lr=1e-3, weight_decay=0.0).defaults["fused"] is True
    monkeypatch.setattr(torch.optim, "Adam", no_fused)
    opt = adam(torch.nn.Linear(3, 1), lr=1e-3, weight_decay=0.1)
    assert not opt.defaults.get("fused")
    assert opt.defaults["weight_decay"] == 0.1
