"""Golden cases through the CKKS backend, with real 128-bit encryption (SEAL).

Per case in CKKS_CASES: the decrypted outputs on the held-out samples lie within the
predicted error bound of the reference backend's outputs on the original graph (and
the bound is within 100x of the measured error); label outputs, which the client
computes after decryption, agree with the reference's; the accuracy on the held-out
split is the float model's within 1 point; the IR after the CKKS pipeline is
expected.ckks.ir. Regenerate those with `examples/build_models.py --ckks`.

cnn_digits (Conv and AveragePool as Toeplitz matrix products) runs in the slow suite
only: its 256 ReLU elements take about 90 s on 2 cores.
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from test_golden import (
    ELIDE_CONSTANTS_OVER,
    GOLDEN,
    _case,
    _predicted_classes,
    _split_floats,
)

import fhec
from fhec.api import CompiledModel
from fhec.ir.printer import print_module

CKKS_CASES = ("logreg_breast_cancer", "mlp_digits", "cnn_digits")
RUN_CASES = [
    "logreg_breast_cancer",
    "mlp_digits",
    pytest.param("cnn_digits", marks=pytest.mark.slow),
]
REGENERATE = "review the change and run `examples/build_models.py --ckks` if it is intended"
# Where the client computes the last ops exactly, the measured error can be at the
# float32 resolution of the reference itself, which the bound covers in the worst case.
FLOAT32_RESOLUTION = 1e-6
MAX_POOL_BYTES = 4 * 2**30  # SEAL's memory pool after the MLP's 360 samples (~1.6 GiB)


@dataclass(frozen=True)
class EncryptedRun:
    model: CompiledModel
    outputs: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    seconds: float
    pool_growth: int  # bytes SEAL's (never shrinking) memory pool grew by during the run


@functools.cache
def _compiled(name: str) -> CompiledModel:
    case = _case(name)
    return fhec.compile(case.model_path, backend="ckks", calibration=case.calibration)


@functools.cache
def _run(name: str) -> EncryptedRun:
    case = _case(name)
    model = _compiled(name)
    original = fhec.compile(case.model_path, backend="reference", pipeline=["infer-shapes"])
    import seal

    pool = seal.MemoryManager.GetPool()
    before = pool.alloc_byte_count()
    start = time.perf_counter()
    outputs = model.run(case.inputs)
    seconds = time.perf_counter() - start
    growth = pool.alloc_byte_count() - before
    return EncryptedRun(model, outputs, original.run(case.inputs), seconds, growth)


@pytest.mark.parametrize("name", CKKS_CASES)
def test_ir_after_ckks_pipeline_matches_expected(name: str) -> None:
    printed = print_module(_compiled(name).module, elide_constants_over=ELIDE_CONSTANTS_OVER)
    expected = (GOLDEN / name / "expected.ckks.ir").read_text()
    if printed == expected:
        return
    printed_skeleton, printed_floats = _split_floats(printed)
    expected_skeleton, expected_floats = _split_floats(expected)
    same_numbers = len(printed_floats) == len(expected_floats) and np.allclose(
        printed_floats, expected_floats, rtol=1e-5, atol=1e-6
    )
    if printed_skeleton != expected_skeleton or not same_numbers:
        diff = "\n".join(
            difflib.unified_diff(
                expected.splitlines(), printed.splitlines(), "expected", "now", lineterm="", n=1
            )
        )
        pytest.fail(f"the CKKS IR of {name} changed; {REGENERATE}\n{diff}", pytrace=False)


@pytest.mark.parametrize("name", RUN_CASES)
def test_encrypted_outputs_within_predicted_bound(
    name: str, record_property: Callable[[str, object], None]
) -> None:
    run = _run(name)
    bounds = run.model.error_bound
    report = run.model.report
    assert report["security_bits"] == 128
    for output, want in run.reference.items():
        got = run.outputs[output]
        assert got.shape == want.shape and got.dtype == want.dtype, output
        if want.dtype.kind in "iu":  # a label: no bound, agreement instead
            assert output not in bounds and output in report["client_outputs"]  # type: ignore[operator]
            agreement = float(np.mean(got == want))
            record_property(f"{name}.{output}.agreement", agreement)
            assert agreement >= 0.99, f"{output}: labels agree on {agreement:.2%}"
            continue
        measured = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        bound = bounds[output]
        record_property(f"{name}.{output}", f"measured {measured:.3g}, bound {bound:.3g}")
        assert measured <= bound, f"{output}: error {measured:.3g} over the bound {bound:.3g}"
        assert bound <= 100 * max(measured, FLOAT32_RESOLUTION), (
            f"{output}: bound {bound:.3g} is over 100x the measured {measured:.3g}"
        )


@pytest.mark.parametrize("name", RUN_CASES)
def test_encrypted_accuracy_within_one_point_of_float_model(
    name: str, record_property: Callable[[str, object], None]
) -> None:
    case = _case(name)
    assert case.labels is not None
    run = _run(name)
    float_accuracy = float(np.mean(_predicted_classes(case.expected) == case.labels))
    encrypted = float(np.mean(_predicted_classes(run.outputs) == case.labels))
    record_property(
        "ckks_accuracy",
        f"{name}: encrypted {encrypted:.4f}, onnxruntime {float_accuracy:.4f} "
        f"on {len(case.labels)} samples in {run.seconds:.1f} s "
        f"(N={run.model.report['poly_degree']}, depth {run.model.report['depth']})",
    )
    assert abs(encrypted - float_accuracy) <= 0.01


def test_classifier_labels_and_probabilities_are_finished_by_the_client() -> None:
    report = _compiled("logreg_breast_cancer").report
    assert report["client_outputs"] == ["output_label", "output_probability"]
    assert sorted(report["error_bound"]) == ["output_probability"]  # type: ignore[call-overload]
    assert "ckks.decrypt" in _compiled("logreg_breast_cancer").ir


def test_mlp_parameters_and_memory() -> None:
    """The smallest N that fits: a low-degree ReLU (its budget from the output's
    precision) in the least depth leaves room in N = 16384 for a 32-bit waterline;
    its 360 samples then need well under 4 GiB of ciphertexts (one polynomial element
    at a time)."""
    run = _run("mlp_digits")
    report = run.model.report
    assert report["poly_degree"] == 16384 and report["scale_bits"] == 32
    assert report["depth"] == 11  # Gemm, ReLU of degree 15 (4), Gemm, ReLU (4), Gemm
    assert run.pool_growth < MAX_POOL_BYTES
