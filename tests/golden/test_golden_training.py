"""Golden encrypted training: three SGD steps of logistic regression from zero.

The files in golden/training_logreg (examples/build_training_golden.py writes them):
the reference backend reproduces expected_weights.npz and expected.step.ir; the CKKS
training pipeline gives expected.ckks_step.ir; the same three steps run encrypted
(128-bit SEAL, a client refresh after each) end within the predicted bound of the
golden weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec.ir.printer import print_module

FOLDER = Path(__file__).parent / "training_logreg"
STEPS, BATCH, LR = 3, 32, 0.5
ELIDE_CONSTANTS_OVER = 64


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(FOLDER / name) as data:
        return {key: data[key] for key in data.files}


def _trainer(backend: str) -> fhec.TrainingModel:
    return fhec.compile_training(str(FOLDER / "start.onnx"), loss="bce", lr=LR,
                                 batch_size=BATCH, backend=backend,
                                 calibration=_load("calibration.npz"))


def _steps(trainer: fhec.TrainingModel) -> dict[str, np.ndarray]:
    batches = _load("data.npz")
    for step in range(STEPS):
        part = slice(step * BATCH, (step + 1) * BATCH)
        trainer.step({"x": batches["x"][part]}, batches["label"][part])
    return trainer.weights()


def _ir(trainer: fhec.TrainingModel) -> str:
    return print_module(trainer.module, elide_constants_over=ELIDE_CONSTANTS_OVER) + "\n"


def test_the_reference_steps_give_the_golden_weights() -> None:
    trainer = _trainer("reference")
    assert _ir(trainer) == (FOLDER / "expected.step.ir").read_text()
    weights, expected = _steps(trainer), _load("expected_weights.npz")
    for name in ("fc.weight", "fc.bias"):
        np.testing.assert_allclose(weights[name], expected[name], rtol=1e-6, atol=1e-7)
    assert np.max(np.abs(expected["fc.weight"])) > 0.05  # three steps moved them


@pytest.fixture(scope="module")
def encrypted() -> fhec.TrainingModel:
    return _trainer("ckks")


def test_the_ckks_step_ir_is_the_golden_one(encrypted: fhec.TrainingModel) -> None:
    assert _ir(encrypted) == (FOLDER / "expected.ckks_step.ir").read_text()


def test_encrypted_steps_end_within_the_bound_of_the_golden_weights(
    encrypted: fhec.TrainingModel,
) -> None:
    weights, expected = _steps(encrypted), _load("expected_weights.npz")
    bounds = encrypted.trainer.session.weight_bounds(STEPS)[-1]  # type: ignore[attr-defined]
    for name in ("fc.weight", "fc.bias"):
        error = float(np.max(np.abs(weights[name] - expected[name])))
        assert error <= bounds[name], f"{name}: {error:.3g} over the bound {bounds[name]:.3g}"
    report = encrypted.report()
    assert report["refreshes"] == STEPS and report["security_bits"] == 128
