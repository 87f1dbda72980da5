"""Encrypted inference with real SEAL at 128-bit security: outputs match onnxruntime
within the predicted bound, and the bound is not loose by more than 100x."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from ckks_helpers import compile_ckks, reference, tiny_model
from onnx import TensorProto, helper

from fhec.backends.ckks import CKKS_BACKEND
from fhec.ir.printer import print_module


def _check_within_bound(got: np.ndarray, want: np.ndarray, bound: float) -> float:
    measured = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    assert measured <= bound, (
        f"measured error {measured:.3g} exceeds the predicted bound {bound:.3g}"
    )
    # Where the client computes the last ops exactly, the error can be at the float32
    # resolution of the reference itself, which the bound covers in the worst case (a
    # dot product's K roundings): there, a bound within 1e-4 is the check.
    floor = FLOAT32_RESOLUTION
    assert bound <= 100 * max(measured, floor), (
        f"bound {bound:.3g} is over 100x the measured {measured:.3g}"
    )
    return measured


FLOAT32_RESOLUTION = 1e-6


def test_mlp_encrypted_matches_onnxruntime(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    options = {"approximate-activations": "max_degree=15"}
    compiled = compile_ckks(mlp, {"x": standardized}, batch_size=64, options=options)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    report = circuit.report()
    assert report["poly_degree"] == 16384 and report["security_bits"] == 128
    assert report["depth"] == report["levels_used"] == 6  # Gemm, ReLU of degree 15 (4), Gemm
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
    # depth 5 (Gemm, ReLU of degree 7 in 3 levels, Gemm) fits N = 8192 at 128 bits
    assert "#ckks_params{poly_degree = 8192" in text
    assert "ckks.matmul_plain" in text and "ckks.relinearize" in text
    secret_lines = [line for line in text.splitlines() if "secret>" in line]
    assert all("#ckks{scale_bits = " in line for line in secret_lines)


def test_linear_model_bound_is_noise_and_rounding_only() -> None:
    """No approximation at all: the bound is CKKS noise plus float32 rounding, and still
    holds and is within 100x of what a 128-bit run measures."""
    rng = np.random.default_rng(1)
    features = rng.uniform(-2, 2, size=(256, 16)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="dense"),
        helper.make_node("Mul", ["h", "h"], ["y"], name="square"),
    ]
    model = tiny_model(nodes, {"W": rng.normal(size=(16, 3)), "b": rng.normal(size=3)}, 16)
    compiled = compile_ckks(model, {"x": features}, batch_size=256)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    assert circuit.report()["poly_degree"] == 8192  # depth 2 at 128-bit security
    got = circuit.run({"x": features})["y"]
    _check_within_bound(got, reference(model, {"x": features})["y"], circuit.error_bound["y"])


def test_key_sizes_reported_are_the_serialized_ones() -> None:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Mul", ["x", "x"], ["y"], name="square")]
    model = tiny_model(nodes, {}, features=4, outputs=4)
    compiled = compile_ckks(model, {"x": rng.uniform(-1, 1, (8, 4)).astype(np.float32)}, 8)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    sizes = circuit.report()["key_bytes"]
    keys = circuit.keys().evaluation
    assert isinstance(sizes, dict)
    for reported, key in (
        (sizes["public"], keys.public_key),
        (sizes["relinearization"], keys.relin_keys),
    ):
        assert 0 <= len(key.to_string()) - reported < 1024  # SEAL's headers on top


@pytest.mark.slow
def test_mlp_with_default_options(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    """The default precision (output_error 0.1): a low-degree ReLU, N = 16384."""
    compiled = compile_ckks(mlp, {"x": standardized}, batch_size=512)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    assert circuit.report()["poly_degree"] == 16384
    got = circuit.run({"x": standardized[:512]})["y"]
    _check_within_bound(
        got, reference(mlp, {"x": standardized[:512]})["y"], circuit.error_bound["y"]
    )


def test_public_inputs_meet_ciphertexts_as_plaintexts() -> None:
    """y = x * p + p with p public: p, varying along the batch, is encoded slot by slot
    at the level and scale each use needs; the server computes on it in the clear."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "p"], ["m"], name="gate"),
            helper.make_node("Add", ["m", "p"], ["y"], name="shift"),
        ],
        "gated",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    inputs = {name: rng.uniform(-1, 1, (16, 3)).astype(np.float32) for name in ("x", "p")}
    options = {"annotate-secrecy": "public=p", "select-params-ckks": "security=0"}
    compiled = compile_ckks(model, inputs, 16, options)
    assert "ckks.encode(%1) {scale_bits = 40, level = 1}" in str(compiled.module)
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    got = circuit.run(inputs)["y"]
    _check_within_bound(got, reference(model, inputs)["y"], circuit.error_bound["y"])
