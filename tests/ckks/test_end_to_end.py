"""Encrypted inference with real SEAL at 128-bit security: outputs match onnxruntime
within the predicted bound, and the bound is not loose by more than 100x."""

from __future__ import annotations

import time

import numpy as np
import onnx
from ckks_helpers import compile_ckks, reference

from fhec.backends.ckks import CKKS_BACKEND
from fhec.ir.printer import print_module


def _check_within_bound(got: np.ndarray, want: np.ndarray, bound: float) -> float:
    measured = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    assert measured <= bound, (
        f"measured error {measured:.3g} exceeds the predicted bound {bound:.3g}"
    )
    assert bound <= 100 * measured, f"bound {bound:.3g} is over 100x the measured {measured:.3g}"
    return measured


def test_mlp_encrypted_matches_onnxruntime(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    options = {"approximate-activations": "max_degree=15"}
    compiled = compile_ckks(mlp, {"x": standardized}, batch_size=64, options=options)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    report = circuit.report()
    assert report["poly_degree"] == 16384 and report["security_bits"] == 128
    assert report["depth"] == report["levels_used"] == 7  # Gemm, ReLU of degree 15, Gemm
    samples = standardized[100:164]
    start = time.perf_counter()
    got = circuit.run({"x": samples})["y"]
    elapsed = time.perf_counter() - start
    want = reference(mlp, {"x": samples})["y"]
    measured = _check_within_bound(got, want, circuit.error_bound["y"])
    # Three ways: the compiled module in plaintext (approximations, no noise) is what the
    # encrypted run computes, up to CKKS noise and float32 rounding.
    simulated = circuit.run({"x": samples}, mode="simulate")["y"]
    assert np.max(np.abs(got - simulated)) < 1e-4
    bound = circuit.error_bound["y"]
    print(f"\nMLP 30-8-2, 64 samples: {elapsed:.2f} s, error {measured:.3g}, bound {bound:.3g}")


def test_logistic_regression_encrypted_matches_onnxruntime(
    logistic: onnx.ModelProto, standardized: np.ndarray
) -> None:
    compiled = compile_ckks(logistic, {"X": standardized}, batch_size=128)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    samples = standardized[:128]
    got = circuit.run({"X": samples})["probabilities"]
    want = reference(logistic, {"X": samples})["probabilities"]
    _check_within_bound(got, want, circuit.error_bound["probabilities"])
    assert np.array_equal(np.argmax(got, axis=1), np.argmax(want, axis=1))
    assert circuit.report()["security_bits"] == 128


def test_ir_shows_scales_levels_and_approximations(
    mlp: onnx.ModelProto, standardized: np.ndarray
) -> None:
    compiled = compile_ckks(
        mlp, {"x": standardized}, 8, {"approximate-activations": "max_degree=7"}
    )
    text = print_module(compiled.module, elide_constants_over=64)
    assert '#approx{function = "nn.relu", degree = 7' in text
    assert "#ckks_params{poly_degree = 16384" in text  # depth 6: beyond N = 8192 at 128 bits
    assert "ckks.matmul_plain" in text and "ckks.relinearize" in text
    secret_lines = [line for line in text.splitlines() if "secret>" in line]
    assert all("#ckks{scale_bits = " in line for line in secret_lines)
