"""Golden classifiers through the TFHE backend (real concrete-python, no mocks).

Per case (logistic regression on breast cancer, MLP and CNN on digits):
- the IR after the tfhe pipeline (default options: 6 bits) is expected.tfhe.ir;
- the quantized model keeps the float model's accuracy within one point on the whole
  held-out split, in clear (the integer module, reference backend) and in concrete's
  simulation with exact rounding, which computes the integer module bit for bit;
- a real encrypted run (keygen, encrypt, execute, decrypt) at 6 bits or fewer on a
  few samples agrees with simulation and the clear module.

Regenerate expected.tfhe.ir with `examples/build_models.py --tfhe` after reviewing an
intended change.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec.api import CompiledModel, lower
from fhec.ir.printer import print_module

GOLDEN = Path(__file__).parent
CASES = ("logreg_breast_cancer", "mlp_digits", "cnn_digits")
ELIDE_CONSTANTS_OVER = 64
REGENERATE = "review the change and run `examples/build_models.py --tfhe` if it is intended"
# Exact rounding: each dropped bit costs a bootstrap, and the circuit computes the
# integer module exactly (approximate rounding, the default, is one step off at times).
EXACT = {"round-accumulators": {"approximate": False}}
Record = Callable[[str, object], None]
LOOKUPS = {"logreg_breast_cancer": 0, "mlp_digits": 32 + 16, "cnn_digits": 4 * 8 * 8}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@functools.cache
def _case(name: str) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Held-out inputs, their labels, calibration samples."""
    inputs = _load_npz(GOLDEN / name / "inputs.npz")
    return inputs, inputs.pop("label"), _load_npz(GOLDEN / name / "calibration.npz")


@functools.cache
def _compiled(name: str, options: str) -> CompiledModel:
    """`options` is a key of OPTIONS (hashable, for the cache)."""
    _, _, calibration = _case(name)
    return fhec.compile(
        GOLDEN / name / "model.onnx",
        backend="tfhe",
        calibration=calibration,
        options=OPTIONS[options],
    )


OPTIONS: dict[str, Mapping[str, Mapping[str, object]]] = {
    "exact": EXACT,
    # the default-suite encrypted runs: keygen and two samples within 10 s (measured:
    # simulated classes agree with clear on 97.5% (MLP), 99% (CNN) of the held-out split)
    # (max_bits 0: every lookup reads `bits`, none widened by the precision search)
    "execute-mlp_digits": {
        "quantize-tfhe": {"bits": 5},
        "round-accumulators": {"bits": 5, "max_bits": 0},
    },
    "execute-cnn_digits": {
        "quantize-tfhe": {"bits": 4},
        "round-accumulators": {"bits": 4, "max_bits": 0},
    },
    "execute-6": {},
}


def _in_clear(model: CompiledModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The integer module, computed exactly by the reference backend."""
    clear = CompiledModel("reference", model.module, model.signature, model.pipeline)
    return clear.run(inputs)


def _predicted(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """A label output if the model has one (skl2onnx), else the argmax of its scores."""
    for value in outputs.values():
        if value.dtype.kind in "iu":
            return np.asarray(value)
    (scores,) = outputs.values()
    return np.asarray(scores.argmax(axis=-1))


def _accuracy(outputs: Mapping[str, np.ndarray], labels: np.ndarray) -> float:
    return float(np.mean(_predicted(outputs) == labels))


# A float literal as the printer writes it: compared with a tolerance (as test_golden.py
# does), since calibrated ranges and scales may differ in the last bits across BLAS builds.
_FLOAT = re.compile(r"(?<![\w.])-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf|nan)(?![\w.])")


def _split_floats(text: str) -> tuple[str, list[float]]:
    return _FLOAT.sub("<float>", text), [float(m) for m in _FLOAT.findall(text)]


@pytest.mark.parametrize("name", CASES)
def test_ir_after_the_tfhe_pipeline_matches_expected(name: str) -> None:
    _, _, calibration = _case(name)
    module = lower(GOLDEN / name / "model.onnx", "tfhe", calibration=calibration)
    printed = print_module(module, elide_constants_over=ELIDE_CONSTANTS_OVER)
    expected = (GOLDEN / name / "expected.tfhe.ir").read_text()
    if printed == expected:
        return
    diff = "\n".join(
        difflib.unified_diff(
            expected.splitlines(), printed.splitlines(), "expected.tfhe.ir", "now", lineterm=""
        )
    )
    printed_skeleton, printed_floats = _split_floats(printed)
    expected_skeleton, expected_floats = _split_floats(expected)
    same_numbers = len(printed_floats) == len(expected_floats) and np.allclose(
        printed_floats, expected_floats, rtol=1e-5, atol=1e-6
    )
    if printed_skeleton != expected_skeleton or not same_numbers:
        pytest.fail(f"the TFHE IR of {name} changed; {REGENERATE}\n{diff}", pytrace=False)


@pytest.mark.parametrize("name", CASES)
def test_quantized_accuracy_is_within_one_point_of_float(
    name: str, record_property: Record
) -> None:
    inputs, labels, _ = _case(name)
    model = _compiled(name, "exact")
    float_outputs = _load_npz(GOLDEN / name / "expected.npz")
    clear = _in_clear(model, inputs)
    simulated = model.run(inputs, mode="simulate")
    # exact rounding: concrete's simulation is the integer module, bit for bit
    for key, value in clear.items():
        np.testing.assert_array_equal(simulated[key], value, err_msg=f"output {key!r}")
    scores = {
        "float": _accuracy(float_outputs, labels),
        "clear": _accuracy(clear, labels),
        "simulate": _accuracy(simulated, labels),
    }
    report = model.report
    record_property(
        "golden_accuracy",
        f"{name} tfhe 6-bit: float {scores['float']:.4f}, clear {scores['clear']:.4f}, "
        f"simulate {scores['simulate']:.4f} on {len(labels)} held-out samples; "
        f"{report['lookups']} lookups of <= {report['max_lookup_bits']} bits, "
        f"max width {report['max_bit_width']} bits",
    )
    # one lookup per hidden unit (MLP) or per convolution output (CNN): ReLU and the
    # requantization fused; the logistic regression's sigmoid runs on the client
    assert report["lookups"] == LOOKUPS[name] and report["max_lookup_bits"] <= 6
    assert scores["clear"] >= scores["float"] - 0.01
    assert scores["simulate"] >= scores["float"] - 0.01


def test_logistic_regression_runs_encrypted_exactly() -> None:
    """No lookup (the sigmoid and argmax run on the client): every run computes the
    same integers, at the default 6 bits."""
    inputs, labels, _ = _case("logreg_breast_cancer")
    model = _compiled("logreg_breast_cancer", "execute-6")
    assert model.report["lookups"] == 0 and model.report["programmable_bootstraps"] == 0
    few = {key: value[:3] for key, value in inputs.items()}
    executed, clear = model.run(few), _in_clear(model, few)
    for key, value in clear.items():
        np.testing.assert_array_equal(executed[key], value, err_msg=f"output {key!r}")
    assert np.array_equal(executed["output_label"], labels[:3])


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_encrypted_runs_agree_with_simulation_and_clear(name: str) -> None:
    """Approximate rounding (one bootstrap per lookup, the default) lands a lookup one
    step off at times, drawn anew in every run: simulation keeps the clear classes on
    the held-out split, and real encrypted runs on the two samples of clearest class
    (of the first 20) keep their classes, the logits within a quarter of their range."""
    inputs, _, _ = _case(name)
    model = _compiled(name, f"execute-{name}")
    assert model.report["max_lookup_bits"] <= 5
    clear = _in_clear(model, inputs)["logits"]
    simulated = model.run(inputs, mode="simulate")["logits"]
    assert np.mean(simulated.argmax(1) == clear.argmax(1)) >= 0.95
    ordered = np.sort(clear[:20], axis=1)
    chosen = np.sort(np.argsort(ordered[:, -1] - ordered[:, -2])[-2:])
    executed = model.run({key: value[chosen] for key, value in inputs.items()})["logits"]
    np.testing.assert_array_equal(executed.argmax(1), clear[chosen].argmax(1))
    assert np.abs(executed - clear[chosen]).max() < 0.25 * np.abs(clear).max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_encrypted_runs_at_the_default_6_bits(name: str) -> None:
    inputs, labels, _ = _case(name)
    model = _compiled(name, "execute-6")
    first = {key: value[:1] for key, value in inputs.items()}
    executed = model.run(first)["logits"]  # keygen and one sample: minutes on one core
    clear = _in_clear(model, first)["logits"]
    np.testing.assert_array_equal(executed.argmax(1), clear.argmax(1))
    assert executed.argmax(1)[0] == labels[0]
