"""Build the golden files of encrypted training (`make golden` runs it).

    .venv/bin/python examples/build_training_golden.py [--out tests/golden/training_logreg]

Logistic regression from zero weights on the standardized breast-cancer features,
binary cross-entropy, lr 0.5, batches of 32. `<out>/` gets:
  start.onnx             the model before training (zero weights)
  data.npz               the three batches of the golden steps, in order (x, label)
  calibration.npz        the training split the step's ranges are calibrated on
  expected_weights.npz   fc.weight and fc.bias after each of the three steps on the
                         reference backend (float32, exact sigmoid), keyed "NAME@STEP"
  expected.step.ir       the step function after the reference pipeline
  expected.ckks_step.ir  the step function after the CKKS training pipeline
Files are written byte-stably (fixed zip timestamps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from build_models import save_npz
from train_logreg_breast_cancer import breast_cancer, logistic_regression

import fhec
from fhec.ir.printer import print_module

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCH, LR = 3, 32, 0.5
ELIDE_CONSTANTS_OVER = 64


def golden_batches() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the steps' batches, the calibration data), both from the training split."""
    x_train, _, y_train, _ = breast_cancer()
    batches = {"x": x_train[: STEPS * BATCH], "label": y_train[: STEPS * BATCH]}
    return batches, {"x": x_train, "label": y_train.astype(np.float32)}


def train(backend: str, calibration: dict[str, np.ndarray]) -> fhec.TrainingModel:
    return fhec.compile_training(logistic_regression(), loss="bce", lr=LR, batch_size=BATCH,
                                 backend=backend, calibration=calibration)


def steps(trainer: fhec.TrainingModel, batches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights after each step, keyed NAME@STEP (1-based)."""
    found = {}
    for step in range(STEPS):
        part = slice(step * BATCH, (step + 1) * BATCH)
        trainer.step({"x": batches["x"][part]}, batches["label"][part])
        found.update({f"{name}@{step + 1}": w for name, w in trainer.weights().items()})
    return found


def step_ir(trainer: fhec.TrainingModel) -> str:
    return print_module(trainer.module, elide_constants_over=ELIDE_CONSTANTS_OVER) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden" / "training_logreg")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    batches, calibration = golden_batches()
    onnx.save(logistic_regression(), str(args.out / "start.onnx"))
    save_npz(args.out / "data.npz", batches)
    save_npz(args.out / "calibration.npz", calibration)
    reference = train("reference", calibration)
    save_npz(args.out / "expected_weights.npz", steps(reference, batches))
    (args.out / "expected.step.ir").write_text(step_ir(reference))
    (args.out / "expected.ckks_step.ir").write_text(step_ir(train("ckks", calibration)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
