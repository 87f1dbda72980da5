"""Logistic regression trained from zero by fhec, next to the same SGD loop in numpy.

The model is an ONNX Gemm + Sigmoid with zero weights; fhec compiles its training step
(binary cross-entropy on the logits, SGD) and runs it on the standardized breast-cancer
features. The numpy loop takes the same batches in the same order in float64, so the
two runs differ only by fhec's float32 arithmetic (and, with --backend ckks or tfhe, by
the encrypted step's approximations: the sigmoid as a polynomial on CKKS, quantization
on TFHE). The encrypted backends calibrate the step's ranges on a rehearsal in clear:
here on the training split itself, for brevity -- in a real deployment the server gets
public, training-like data for that, never the private batches.

    .venv/bin/python examples/train_logreg_breast_cancer.py [--epochs 20] [--lr 0.1]
        [--backend reference|ckks|tfhe]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fhec
from fhec.runtime.training import epoch_batches

SEED = 0
FEATURES = 30


def breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardized (on the training split) float32 features, 0/1 labels."""
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=SEED)
    scaler = StandardScaler().fit(x_train)
    return (scaler.transform(x_train).astype(np.float32), scaler.transform(x_test).astype(
        np.float32), y_train.astype(np.int64), y_test.astype(np.int64))


def logistic_regression(features: int = FEATURES) -> onnx.ModelProto:
    """x (N, features) -> Gemm 'fc' (zero weights) -> Sigmoid 'sigmoid' -> probability (N, 1)."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["logit"], name="fc"),
        helper.make_node("Sigmoid", ["logit"], ["probability"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "logistic_regression",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.zeros((features, 1), np.float32), "fc.weight"),
         numpy_helper.from_array(np.zeros(1, np.float32), "fc.bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def numpy_sgd(x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch_size: int,
              seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """The same loop in float64: same zero start, same batches as fhec's fit(seed=...)."""
    weight, bias = np.zeros((x.shape[1], 1)), np.zeros(1)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in epoch_batches(len(x), batch_size, rng):
            xb, yb = x[batch].astype(np.float64), y[batch].reshape(-1, 1)
            error = 1.0 / (1.0 + np.exp(-(xb @ weight + bias))) - yb  # d loss / d logit * B
            weight -= lr * xb.T @ error / len(batch)
            bias -= lr * error.mean(axis=0)
    return weight, bias


def accuracy(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float((((x @ weight + bias) > 0).ravel() == y).mean())


def run(epochs: int = 20, lr: float = 0.1, batch_size: int = 32,
        backend: str = "reference") -> dict[str, float]:
    x_train, x_test, y_train, y_test = breast_cancer()
    calibration = None if backend == "reference" else {"x": x_train, "label": y_train}
    trainer = fhec.compile_training(logistic_regression(), trainable="last", loss="bce",
                                    lr=lr, batch_size=batch_size, backend=backend,
                                    calibration=calibration, calibration_epochs=epochs,
                                    report_loss=True)
    history = trainer.fit({"x": x_train, "label": y_train}, epochs=epochs, seed=SEED)
    tuned = trainer.weights()
    weight, bias = numpy_sgd(x_train, y_train, epochs=epochs, lr=lr, batch_size=batch_size)
    return {
        "fhec test accuracy": accuracy(tuned["fc.weight"], tuned["fc.bias"], x_test, y_test),
        "numpy test accuracy": accuracy(weight, bias, x_test, y_test),
        "largest weight difference": float(np.abs(tuned["fc.weight"] - weight).max()),
        "first loss": history.losses[0],
        "last loss": history.losses[-1],
        "steps": float(history.steps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backend", default="reference", choices=("reference", "ckks", "tfhe"))
    args = parser.parse_args(argv)
    results = run(args.epochs, args.lr, args.batch_size, args.backend)
    print(f"logistic regression from zero ({args.backend} backend): {args.epochs} epochs, "
          f"lr {args.lr}, batch {args.batch_size}")
    for name, value in results.items():
        print(f"  {name:26s} {value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
