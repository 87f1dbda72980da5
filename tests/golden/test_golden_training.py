"""Golden encrypted training: three SGD steps of logistic regression from zero.

The files in golden/training_logreg (examples/build_training_golden.py writes them):
the reference backend reproduces expected_weights.npz (the weights after each step)
and expected.step.ir; the CKKS training pipeline gives expected.ckks_step.ir. Run
encrypted (128-bit SEAL, a client refresh after each step): each step taken from the
golden weights before it lands within its predicted bound of the golden weights after
it (the bound of one step: 10-100x the error measured), and the three steps from zero
end within the bound of three (sound, but loose: it compounds each step's worst case,
every feature at its largest magnitude, about 500x per step here).
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


NAMES = ("fc.weight", "fc.bias")


def _step(trainer: fhec.TrainingModel, step: int) -> dict[str, np.ndarray]:
    """Step `step` (1-based) on its golden batch; the weights after it."""
    batches, part = _load("data.npz"), slice((step - 1) * BATCH, step * BATCH)
    trainer.step({"x": batches["x"][part]}, batches["label"][part])
    return trainer.weights()


def _golden(step: int) -> dict[str, np.ndarray]:
    expected = _load("expected_weights.npz")
    return {name: expected[f"{name}@{step}"] for name in NAMES}


def _ir(trainer: fhec.TrainingModel) -> str:
    return print_module(trainer.module, elide_constants_over=ELIDE_CONSTANTS_OVER) + "\n"


def test_the_reference_steps_give_the_golden_weights() -> None:
    trainer = _trainer("reference")
    assert _ir(trainer) == (FOLDER / "expected.step.ir").read_text()
    for step in range(1, STEPS + 1):
        weights, expected = _step(trainer, step), _golden(step)
        for name in NAMES:
            np.testing.assert_allclose(weights[name], expected[name], rtol=1e-6, atol=1e-7)
    assert np.max(np.abs(_golden(STEPS)["fc.weight"])) > 0.05  # three steps moved them


@pytest.fixture(scope="module")
def encrypted() -> fhec.TrainingModel:
    return _trainer("ckks")


def test_the_ckks_step_ir_is_the_golden_one(encrypted: fhec.TrainingModel) -> None:
    assert _ir(encrypted) == (FOLDER / "expected.ckks_step.ir").read_text()


def _within(weights: dict[str, np.ndarray], expected: dict[str, np.ndarray],
            bounds: dict[str, float], what: str) -> list[float]:
    errors = []
    for name in NAMES:
        error = float(np.max(np.abs(weights[name] - expected[name])))
        assert error <= bounds[name], f"{what} {name}: {error:.3g} over {bounds[name]:.3g}"
        errors.append(error)
    return errors


def test_encrypted_steps_end_within_the_bound_of_the_golden_weights(
    encrypted: fhec.TrainingModel,
) -> None:
    session = encrypted.trainer.session
    for step in range(1, STEPS + 1):
        weights = _step(encrypted, step)
    _within(weights, _golden(STEPS), session.weight_bounds(STEPS)[-1],  # type: ignore[attr-defined]
            "three steps from zero:")
    one_step = session.weight_bounds(1)[0]  # type: ignore[attr-defined]
    for step in range(1, STEPS + 1):
        before = (_golden(step - 1) if step > 1
                  else {n: np.zeros_like(w) for n, w in _golden(1).items()})
        session.load_weights(before)  # type: ignore[attr-defined]
        errors = _within(_step(encrypted, step), _golden(step), one_step, f"step {step}:")
        assert max(errors) >= 1e-8  # encrypted: CKKS noise and the fitted sigmoid show
    report = encrypted.report()
    assert report["refreshes"] == 2 * STEPS and report["security_bits"] == 128
