"""Transfer learning with fhec: fine-tune the head of a pretrained MLP on new classes.

An MLP (64-32-10, ReLU) is pretrained in PyTorch on the digits 0-4 only (its outputs
for 5-9 never see a sample), exported to ONNX, and its last Gemm (the head) is then
fine-tuned by fhec on the digits of all ten classes, the hidden layer frozen. With
--backend ckks the data and the head's weights are encrypted: the frozen layer and its
ReLU (a polynomial) run on the encrypted features, and the head trains on the mean
squared error to one-hot labels (CKKS refuses softmax cross-entropy); --samples limits
the training samples (a CKKS step of this head takes seconds). The same run in clear
(reference backend, same loss, same batches) is printed beside it. Calibration uses the
training split here, for brevity (a deployment gives the server public data for that).

    .venv/bin/python examples/train_transfer_digits.py [--epochs 10] [--lr 0.05] [--momentum 0.9]
    .venv/bin/python examples/train_transfer_digits.py --backend ckks --loss mse --lr 0.05 \
        --momentum 0 --epochs 2 --samples 320
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import fhec

SEED = 0
PRETRAIN_CLASSES = 5  # the digits 0-4
PRETRAIN_EPOCHS = 30


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """8x8 digits scaled to [0, 1], flat (N, 64) float32; a fixed train/test split."""
    features, labels = load_digits(return_X_y=True)
    features = (features / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=SEED
    )
    return x_train, x_test, y_train.astype(np.int64), y_test.astype(np.int64)


def pretrain(x: np.ndarray, y: np.ndarray) -> onnx.ModelProto:
    """The MLP trained with Adam on (x, y), exported with a symbolic batch axis."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.Generator().manual_seed(SEED)
    for _ in range(PRETRAIN_EPOCHS):
        for batch in torch.randperm(len(x), generator=order).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(features[batch]), labels[batch]).backward()
            optimizer.step()
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (features[:1],), buffer, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return onnx.load_from_string(buffer.getvalue())


def accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def run(epochs: int = 10, lr: float = 0.05, momentum: float = 0.9, batch_size: int = 32,
        out: Path | None = None, backend: str = "reference", loss: str = "cross-entropy",
        samples: int | None = None) -> dict[str, float]:
    """Pretrain, fine-tune the head, and return the accuracies along the way."""
    x_train, x_test, y_train, y_test = digits()
    seen = y_train < PRETRAIN_CLASSES
    pretrained = pretrain(x_train[seen], y_train[seen])
    labels = y_train if loss == "cross-entropy" else np.eye(10, dtype=np.float32)[y_train]
    data = {"input": x_train[:samples], "label": labels[:samples]}
    tuned_path = out or Path("transfer_digits_tuned.onnx")
    results: dict[str, float] = {}
    test_seen = y_test < PRETRAIN_CLASSES
    results["pretrained accuracy on 0-4"] = accuracy(pretrained, x_test[test_seen],
                                                     y_test[test_seen])
    results["pretrained accuracy on 0-9"] = accuracy(pretrained, x_test, y_test)
    runs = ("reference",) if backend == "reference" else (backend, "reference")
    for name in runs:
        trainer = fhec.compile_training(
            pretrained, trainable="last", loss=loss, lr=lr, momentum=momentum,
            batch_size=batch_size, backend=name, report_loss=True,
            calibration=None if name == "reference" else data, calibration_epochs=epochs,
        )
        history = trainer.fit(data, epochs=epochs, progress=None)
        path = tuned_path if name == backend else tuned_path.with_suffix(".clear.onnx")
        tuned = onnx.load(str(trainer.export(path)))
        results[f"fine-tuned accuracy on 0-9 ({name})"] = accuracy(tuned, x_test, y_test)
        results[f"first loss ({name})"] = history.losses[0]
        results[f"last loss ({name})"] = history.losses[-1]
        results["steps"] = float(history.steps)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--out", type=Path, default=Path("transfer_digits_tuned.onnx"))
    parser.add_argument("--backend", default="reference", choices=("reference", "ckks", "tfhe"))
    parser.add_argument("--loss", default="cross-entropy", choices=("cross-entropy", "mse"))
    parser.add_argument("--samples", type=int, help="train on the first N samples only")
    args = parser.parse_args(argv)
    results = run(args.epochs, args.lr, args.momentum, out=args.out, backend=args.backend,
                  loss=args.loss, samples=args.samples)
    print(f"head (last Gemm) fine-tuned by fhec ({args.backend} backend): {args.epochs} "
          f"epochs, lr {args.lr}, momentum {args.momentum}, loss {args.loss}")
    for name, value in results.items():
        print(f"  {name:28s} {value:.4g}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
