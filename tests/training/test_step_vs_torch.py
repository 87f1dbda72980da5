"""Training steps of exported PyTorch models against torch autograd + torch.optim.SGD.

The same initial weights (the exported ones), the same batches: after the steps, each
trained tensor must match PyTorch's within 1e-5 relative (largest difference over the
tensor's largest magnitude), and the reported losses PyTorch's losses.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import fhec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript export

RELATIVE = 1e-5
BATCH = 8
STEPS = 2


def _export(model: nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def _binary() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())


def _cnn() -> nn.Module:
    """Conv + AvgPool + Gemm, the small CNN of the brief."""
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def _cnn_chain() -> nn.Module:
    """Two convolutions (the second strided and grouped): the input gradient of a conv."""
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), nn.Sigmoid(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 5))


def _torch_loss(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if loss == "cross-entropy":
        return nn.functional.cross_entropy
    if loss == "bce":  # on the probabilities: the same function fhec computes on logits
        return lambda p, t: nn.functional.binary_cross_entropy(p, t.reshape(p.shape))
    return nn.functional.mse_loss


def _data(loss: str, shape: tuple[int, ...], classes: int, seed: int
          ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH * STEPS, *shape)).astype(np.float32)
    if loss == "cross-entropy":
        return x, rng.integers(0, classes, BATCH * STEPS)
    if loss == "bce":
        return x, rng.integers(0, 2, BATCH * STEPS).astype(np.float32)
    return x, rng.standard_normal((BATCH * STEPS, classes)).astype(np.float32)


CASES = [
    # (name, model, input shape, outputs, loss, trainable, momentum)
    ("mlp_cross_entropy_momentum", _mlp, (6,), 3, "cross-entropy", None, 0.9),
    ("mlp_mse", _mlp, (6,), 3, "mse", None, 0.0),
    ("binary_bce", _binary, (6,), 1, "bce", None, 0.5),
    ("cnn_cross_entropy_momentum", _cnn, (1, 8, 8), 5, "cross-entropy", None, 0.9),
    ("cnn_chain_cross_entropy", _cnn_chain, (1, 8, 8), 5, "cross-entropy", None, 0.0),
    ("cnn_head_only", _cnn, (1, 8, 8), 5, "cross-entropy", "last", 0.0),
]


@pytest.mark.parametrize(("name", "factory", "shape", "classes", "loss", "trainable",
                          "momentum"), CASES, ids=[c[0] for c in CASES])
def test_steps_match_torch(name: str, factory: Callable[[], nn.Module], shape: tuple[int, ...],
                           classes: int, loss: str, trainable: str | None,
                           momentum: float) -> None:
    torch.manual_seed(0)
    model = factory()
    x, labels = _data(loss, shape, classes, seed=len(name))
    proto = _export(model, torch.from_numpy(x[:1]))
    params = dict(model.named_parameters())
    names = list(params) if trainable is None else list(params)[-2:]  # the last Linear
    trainer = fhec.compile_training(proto, trainable=names if trainable is None else trainable,
                                    loss=loss, lr=0.1, momentum=momentum, batch_size=BATCH)
    assert set(trainer.parameters) == set(names)

    optimizer = torch.optim.SGD([params[n] for n in names], lr=0.1, momentum=momentum)
    for p in set(params) - set(names):
        params[p].requires_grad_(False)
    torch_losses, fhec_losses = [], []
    for step in range(STEPS):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        optimizer.zero_grad()
        prediction = model(torch.from_numpy(x[batch]))
        value = _torch_loss(loss)(prediction, torch.from_numpy(labels[batch]))
        value.backward()
        optimizer.step()
        torch_losses.append(value.item())
        fhec_losses.append(trainer.step({"input": x[batch]}, labels[batch]))

    np.testing.assert_allclose(fhec_losses, torch_losses, rtol=1e-5)
    tuned = trainer.weights()
    for n in names:
        expected = params[n].detach().numpy()
        error = np.abs(tuned[n] - expected).max() / np.abs(expected).max()
        assert error < RELATIVE, f"{n}: relative difference {error:.2e}"
