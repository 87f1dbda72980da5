"""The CKKS single-sample layout (pack-slots-ckks{layout=single|auto}): one ciphertext per
value, Halevi-Shoup diagonal mat-vecs with baby-step giant-step rotations. Real SEAL:
small insecure parameters for behaviour, one 128-bit run on the golden MLP."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from ckks_helpers import FAST, compile_ckks, golden_single, tiny_model
from onnx import helper

import fhec
from fhec.backends.ckks.circuit import CkksCircuit
from fhec.backends.ckks.evaluator import Evaluator
from fhec.backends.ckks.seal_context import Encryptor, SecretKeys
from fhec.ir.errors import CompileError, FhecError, InputError
from fhec.ir.ops import ckks
from fhec.ir.types import DType, TensorType
from fhec.passes.select_rotation_keys_ckks import module_rotations
from fhec.runtime.ckks_client import CkksClient
from fhec.runtime.ckks_server import CkksServer

GOLDEN = Path(__file__).parent.parent / "golden" / "mlp_digits"
SINGLE = {**FAST, "pack-slots-ckks": "layout=single"}
AUTO = {**FAST, "pack-slots-ckks": "layout=auto"}


def _ops(module: object) -> set[str]:
    graph = module.graph  # type: ignore[attr-defined]
    return {graph.node(v).op.name for v in graph}


def _reference(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return fhec.compile(model, backend="reference").run(inputs)


def test_mlp_one_sample_within_the_bound(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    """30-8-2 ReLU MLP, one sample per run: within the predicted bound of the reference
    backend on the original graph, and close to the compiled module run in the clear."""
    compiled = compile_ckks(mlp, {"x": standardized[:64]}, 1, SINGLE)
    assert {"ckks.matvec_stacked", "ckks.matvec_diagonal"} <= _ops(compiled.module)
    assert "ckks.matmul_plain" not in _ops(compiled.module)
    circuit = CkksCircuit(compiled.module, compiled.signature)
    assert circuit.samples_per_run == 1 and circuit.period == 32
    for row in (0, 7):
        sample = {"x": standardized[row : row + 1]}
        encrypted = circuit.run(sample)["y"]
        simulated = circuit.run(sample, mode="simulate")["y"]
        assert np.max(np.abs(encrypted - _reference(mlp, sample)["y"])) <= circuit.error_bound["y"]
        assert np.max(np.abs(encrypted - simulated)) < 1e-3  # CKKS noise alone: small


def test_server_encodes_the_weight_diagonals_once(
    mlp: onnx.ModelProto, standardized: np.ndarray
) -> None:
    """The server keeps the encoded diagonals between requests: the second request
    encodes none, and both decrypt within the bound."""
    compiled = compile_ckks(mlp, {"x": standardized[:64]}, 1, SINGLE)
    client = CkksClient(compiled.module, compiled.signature)
    server = CkksServer(compiled.module, client.evaluation_keys())
    bound = CkksCircuit(compiled.module, compiled.signature).error_bound["y"]
    counts = []
    for row in (0, 7):
        sample = {"x": standardized[row : row + 1]}
        got = client.decrypt(server.run(client.encrypt(sample)))["y"]
        assert np.max(np.abs(got - _reference(mlp, sample)["y"])) <= bound
        counts.append(len(server.diagonals))
    assert counts[0] > 0 and counts[1] == counts[0]


def test_report_rotation_keys_and_many_samples(
    gemm_sigmoid: onnx.ModelProto,
) -> None:
    """A 4 -> 3 layer on the input (stacked: 4 blocks of period 4): rotations by 4 and 8,
    two Galois keys in the report; `fhec.compile(...).run` takes several samples, one
    per run."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    options = {"pack-slots-ckks": {"layout": "single"},
               "select-params-ckks": {"security": 0, "poly_degree": 4096}}
    model = fhec.compile(gemm_sigmoid, backend="ckks", calibration={"x": x}, options=options)
    report = model.circuit.report()  # type: ignore[union-attr]
    assert report["layout"] == "single" and report["period"] == 4
    assert report["galois_keys"] == 2
    assert module_rotations(model.circuit.module) == (4, 8)  # type: ignore[union-attr]
    assert report["key_bytes"]["galois"] == 2 * report["key_bytes"]["relinearization"]  # type: ignore[index]
    outputs = model.run({"x": x[:3]})["y"]
    expected = _reference(gemm_sigmoid, {"x": x[:3]})["y"]
    assert outputs.shape == (3, 3)
    assert np.max(np.abs(outputs - expected)) <= report["error_bound"]["y"]  # type: ignore[index]


def test_auto_picks_single_for_one_sample_and_batch_otherwise(
    mlp: onnx.ModelProto, standardized: np.ndarray
) -> None:
    one = compile_ckks(mlp, {"x": standardized[:32]}, 1, AUTO)
    many = compile_ckks(mlp, {"x": standardized[:32]}, 8, AUTO)
    assert one.notes["pack-slots-ckks"].startswith("layout single (estimated")
    assert "ckks.matvec_stacked" in _ops(one.module)
    assert many.notes["pack-slots-ckks"] == "layout batch"
    assert "ckks.matmul_plain" in _ops(many.module)


def test_auto_prices_the_request(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    """The cost model: one sample per run costs the single layout a few rotations per
    layer, the batch layout one ciphertext per element whatever the samples; a request of
    many samples goes to the batch layout, which serves them in one run."""
    few = {**FAST, "pack-slots-ckks": "layout=auto,samples=1"}
    many = {**FAST, "pack-slots-ckks": "layout=auto,samples=4096"}
    one = compile_ckks(mlp, {"x": standardized[:32]}, 1, few).notes["pack-slots-ckks"]
    lots = compile_ckks(mlp, {"x": standardized[:32]}, 1, many).notes["pack-slots-ckks"]
    [(single, batch)] = re.findall(r"estimated (\S+) ms single, (\S+) ms batch", one)
    single_ms, batch_ms = float(single), float(batch)
    assert one.startswith("layout single") and single_ms < batch_ms
    assert lots.startswith("layout batch") and "for 4096 samples" in lots


def test_samples_must_be_positive(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    with pytest.raises(FhecError, match="samples must be at least 1"):
        compile_ckks(mlp, {"x": standardized[:32]}, 1, {"pack-slots-ckks": "layout=auto,samples=0"})


def _scaled_by_sum() -> onnx.ModelProto:
    """x * sum(x): two encrypted operands, one broadcast (the batch layout's elementwise
    ciphertexts broadcast; the single layout's one ciphertext per value cannot)."""
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=1),
             helper.make_node("Mul", ["x", "s"], ["y"], name="scale")]
    return tiny_model(nodes, {}, features=4, outputs=4)


def test_auto_keeps_batch_for_ops_without_a_single_form() -> None:
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    compiled = compile_ckks(_scaled_by_sum(), {"x": x}, 1, AUTO)
    assert compiled.notes["pack-slots-ckks"] == "layout batch"


def test_single_refuses_a_batch(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    with pytest.raises(CompileError, match="compile with batch_size=1"):
        compile_ckks(mlp, {"x": standardized[:32]}, 4, SINGLE)


def test_single_refuses_broadcast_encrypted_operands() -> None:
    """The sum is a linear map (a matrix of ones); the product of x by it broadcasts one
    ciphertext against another, which has no single-sample form."""
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(CompileError, match=r"node 'scale'.*broadcasts encrypted operands"):
        compile_ckks(_scaled_by_sum(), {"x": x}, 1, SINGLE)


def test_packed_input_of_two_samples_is_refused(
    gemm_sigmoid: onnx.ModelProto,
) -> None:
    x = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    compiled = compile_ckks(gemm_sigmoid, {"x": x}, 1, SINGLE)
    circuit = CkksCircuit(compiled.module, compiled.signature)
    with pytest.raises(InputError, match="single-sample layout"):
        circuit.encrypt(Encryptor(circuit.context, circuit.keys()), {"x": x[:2]})


def test_rotating_without_galois_keys_is_refused(gemm_sigmoid: onnx.ModelProto) -> None:
    x = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    compiled = compile_ckks(gemm_sigmoid, {"x": x}, 1, SINGLE)
    circuit = CkksCircuit(compiled.module, compiled.signature)
    keys = SecretKeys.generate(circuit.context, ())  # no rotations: no Galois keys
    encrypted = circuit.encrypt(Encryptor(circuit.context, keys), {"x": x[:1]})
    with pytest.raises(InputError, match="no Galois keys"):
        Evaluator(circuit.module, circuit.context, keys.evaluation).run(encrypted)


def test_packed_input_with_nan_is_refused(gemm_sigmoid: onnx.ModelProto) -> None:
    x = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    compiled = compile_ckks(gemm_sigmoid, {"x": x}, 1, SINGLE)
    circuit = CkksCircuit(compiled.module, compiled.signature)
    bad = x[:1].copy()
    bad[0, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        circuit.encrypt(Encryptor(circuit.context, circuit.keys()), {"x": bad})


def test_golden_mlp_at_128_bits_one_sample() -> None:
    """The golden MLP 64-32-16-10, batch_size=1, 128-bit security: each sample's logits
    within the predicted bound of the reference backend's, and the same class."""
    _, report = golden_single(GOLDEN)
    # layer 1 stacked (rotations 64, 128, ..., 2048), layers 2 and 3 diagonal: baby steps
    # 1..7, and the giant steps of their nonzero diagonals (32 x 16 and 16 x 10 in period
    # 64: diagonals 0..31 and 49..63, so 8, 16, 24, 48, 56 but not 32, 40)
    assert report["period"] == 64 and report["galois_keys"] == 6 + 7 + 5


def test_matvec_rotation_steps() -> None:
    """Baby steps 1..b-1 and giant steps b, 2b, ..., P - b: O(sqrt P) keys."""
    assert ckks.MatVecDiagonalOp(64, 8).rotation_steps(8192) == (
        1, 2, 3, 4, 5, 6, 7, 8, 16, 24, 32, 40, 48, 56)  # fmt: skip
    assert ckks.MatVecStackedOp(64).rotation_steps(8192) == (64, 128, 256, 512, 1024, 2048)
    f32 = DType.from_numpy(np.float32)
    sample, matrix = TensorType((1, 3), f32, True), TensorType((3, 2), f32, False)
    with pytest.raises(ValueError, match="powers of two"):
        ckks.MatVecDiagonalOp(6, 4).infer([sample, matrix])
    with pytest.raises(ValueError, match="one sample"):
        ckks.MatVecDiagonalOp(2, 2).infer([sample, matrix])  # 3 > period 2
    with pytest.raises(ValueError, match="not a power of two"):
        ckks.MatVecStackedOp(6).infer([sample, matrix])
    with pytest.raises(ValueError, match="one sample"):
        ckks.MatVecStackedOp(4).infer([sample.with_shape((2, 3)), matrix])


def test_client_server_split(mlp: onnx.ModelProto, standardized: np.ndarray) -> None:
    """The single layout's one ciphertext travels as bytes like the batch layout's."""
    from fhec.runtime.ckks_client import CkksClient
    from fhec.runtime.ckks_server import CkksServer

    compiled = compile_ckks(mlp, {"x": standardized[:64]}, 1, SINGLE)
    client = CkksClient(compiled.module, compiled.signature)
    server = CkksServer(compiled.module, client.evaluation_keys())
    sample = {"x": standardized[3:4]}
    outputs = client.decrypt(server.run(client.encrypt(sample)))
    error = np.max(np.abs(outputs["y"] - _reference(mlp, sample)["y"]))
    assert outputs["y"].shape == (1, 2)
    assert error <= client.error_bound["y"]
