"""Models, data and a compile helper for the CKKS tests (real SEAL, no mocks)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from ckks_helpers import tiny_model


@pytest.fixture(scope="session")
def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    return features.astype(np.float32), labels


@pytest.fixture(scope="session")
def standardized(breast_cancer: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    features = breast_cancer[0]
    return ((features - features.mean(0)) / features.std(0)).astype(np.float32)


@pytest.fixture(scope="session")
def mlp(standardized: np.ndarray, breast_cancer: tuple[np.ndarray, np.ndarray]) -> onnx.ModelProto:
    """A 30-8-2 ReLU MLP trained on the breast cancer data, exported by torch (TorchScript)."""
    import io

    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    features, labels = torch.tensor(standardized), torch.tensor(breast_cancer[1])
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(features), labels).backward()
        optimizer.step()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, features[:1], buffer, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False,
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


@pytest.fixture(scope="session")
def logistic(
    standardized: np.ndarray, breast_cancer: tuple[np.ndarray, np.ndarray]
) -> onnx.ModelProto:
    """A logistic regression on the standardized data, converted by skl2onnx (one
    LinearClassifier node; probabilities only: the label is an argmax, which the client
    takes after decryption)."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(C=0.1, max_iter=1000).fit(standardized, breast_cancer[1])
    options = {LogisticRegression: {"zipmap": False}}
    model = to_onnx(classifier, standardized[:1], options=options)
    kept = [o for o in model.graph.output if o.name == "probabilities"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


@pytest.fixture(scope="session")
def gemm_sigmoid() -> onnx.ModelProto:
    """y = sigmoid(x W + b): a layer small enough for fast encrypted tests."""
    from onnx import helper

    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["z"], name="dense"),
        helper.make_node("Sigmoid", ["z"], ["y"], name="act"),
    ]
    return tiny_model(nodes, {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)})
