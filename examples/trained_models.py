"""Small trained models, exported as a user would: scikit-learn via skl2onnx, PyTorch
via torch.onnx. Everything is seeded and single-threaded, so a rebuild on the same
machine gives the same bytes."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import onnx
import skl2onnx
import torch
from cases import Case
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

SPLIT_SEED = 0
TORCH_SEED = 0
TORCH_OPSET = 17
# Training samples given to the compiler as calibration data (the value ranges).
CALIBRATION_SAMPLES = 64
BATCH_SIZE = 64


def make_deterministic() -> None:
    """Seeded, single-threaded, deterministic kernels: the same weights every run."""
    torch.manual_seed(TORCH_SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def logreg_breast_cancer() -> Case:
    """StandardScaler + LogisticRegression in one sklearn Pipeline (what users ship),
    exported with skl2onnx's defaults, fed raw features."""
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(features, labels, random_state=SPLIT_SEED)
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        x_train, y_train
    )
    proto = skl2onnx.to_onnx(model, x_train[:1])
    input_name = proto.graph.input[0].name
    return Case(
        name="logreg_breast_cancer",
        description="scikit-learn StandardScaler + LogisticRegression pipeline on breast "
        "cancer features (skl2onnx defaults: Scaler, LinearClassifier, Cast, ZipMap)",
        model=proto,
        inputs={input_name: x_test},
        calibration={input_name: x_train[:CALIBRATION_SAMPLES]},
        labels=y_test.astype(np.int64),
        notes={"train accuracy": f"{model.score(x_train, y_train):.4f}"},
    )


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8x8 digits scaled to [0, 1], flat (N, 64) float32; the fixed train/test split."""
    features, labels = load_digits(return_X_y=True)
    features = (features / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=SPLIT_SEED
    )
    return x_train, x_test, y_train.astype(np.int64), y_test.astype(np.int64)


class DigitsMlp(nn.Module):
    """64-32-16-10 with ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # type: ignore[no-any-return]


class DigitsCnn(nn.Module):
    """Conv(1->4, 3x3, pad 1) + BatchNorm + ReLU + AvgPool(2) + Flatten + Linear(64->10)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def train_classifier(
    model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, *, epochs: int
) -> float:
    """A few epochs of Adam on minibatches in a seeded order; returns train accuracy."""
    features, labels = torch.from_numpy(x_train), torch.from_numpy(y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(TORCH_SEED)
    model.train()
    for _ in range(epochs):
        permutation = torch.randperm(len(features), generator=order)
        for start in range(0, len(permutation), BATCH_SIZE):
            batch = permutation[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(model(features[batch]), labels[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        return float((model(features).argmax(1) == labels).float().mean())


def export_torch(model: nn.Module, example: np.ndarray) -> onnx.ModelProto:
    """The TorchScript exporter with a symbolic batch axis. Constant folding is off so
    that BatchNormalization reaches fhec's own fold-batchnorm pass (with it on, torch
    fuses it into the Conv)."""
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths
        dynamo=False,
        opset_version=TORCH_OPSET,
        do_constant_folding=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return onnx.load_from_string(buffer.getvalue())


def _torch_digits_case(
    name: str,
    description: str,
    model_factory: Callable[[], nn.Module],
    image_shape: tuple[int, ...],
    epochs: int,
) -> Case:
    x_train, x_test, y_train, y_test = digits_split()
    x_train = x_train.reshape(-1, *image_shape)
    x_test = x_test.reshape(-1, *image_shape)
    make_deterministic()
    model = model_factory()
    train_accuracy = train_classifier(model, x_train, y_train, epochs=epochs)
    return Case(
        name=name,
        description=description,
        model=export_torch(model, x_train[:1]),
        inputs={"input": x_test},
        calibration={"input": x_train[:CALIBRATION_SAMPLES]},
        labels=y_test,
        notes={"train accuracy": f"{train_accuracy:.4f}"},
    )


def mlp_digits() -> Case:
    return _torch_digits_case(
        "mlp_digits",
        "PyTorch MLP 64-32-16-10 (ReLU) on 8x8 digits scaled to [0, 1]",
        DigitsMlp,
        (64,),
        epochs=30,
    )


def cnn_digits() -> Case:
    return _torch_digits_case(
        "cnn_digits",
        "PyTorch CNN on (N, 1, 8, 8) digits: Conv 3x3 + BatchNormalization + ReLU + "
        "AveragePool 2 + Flatten + Gemm",
        DigitsCnn,
        (1, 8, 8),
        epochs=20,
    )


TRAINED_CASES: tuple[Callable[[], Case], ...] = (logreg_breast_cancer, mlp_digits, cnn_digits)
