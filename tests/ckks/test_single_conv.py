"""Convolutions, pooling and other linear maps in the CKKS single-sample layout: each a
matrix probed from the op (passes/single_linear_ckks.py), chains of them folded, then
Halevi-Shoup mat-vecs. Real SEAL against onnxruntime: small insecure parameters for
behaviour, one 128-bit run on the golden CNN."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from ckks_helpers import FAST, compile_ckks, golden_single, reference
from onnx import TensorProto, helper, numpy_helper

from fhec.backends.ckks.circuit import CkksCircuit
from fhec.ir.errors import CompileError
from fhec.ir.parser import parse_module
from fhec.passes.single_linear_ckks import affine_map

GOLDEN = Path(__file__).parent.parent / "golden" / "cnn_digits"
SINGLE = {**FAST, "pack-slots-ckks": "layout=single"}
AUTO = {**FAST, "pack-slots-ckks": "layout=auto"}


def _model(
    nodes: list[onnx.NodeProto],
    weights: dict[str, np.ndarray],
    shape: tuple[int, ...],
    outputs: tuple[int, ...],
) -> onnx.ModelProto:
    """x (N, *shape) -> y (N, *outputs) through `nodes`; integer weights stay int64."""
    tensors = [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
               for k, v in weights.items()]
    graph = helper.make_graph(
        nodes, "single_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *outputs])],
        tensors,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_square_pool_dense() -> onnx.ModelProto:
    """conv 3x3 pad 1 (1 -> 2 channels, 4x4) -> square -> avg pool 2 -> flatten -> dense 3."""
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "c"], ["s"], name="square"),
        helper.make_node("AveragePool", ["s"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W", "B"], ["y"], name="dense"),
    ]  # fmt: skip
    weights = {"w": rng.normal(size=(2, 1, 3, 3)) / 3, "b": np.array([0.1, -0.2]),
               "W": rng.normal(size=(8, 3)), "B": np.array([0.5, -0.5, 0.25])}
    return _model(nodes, weights, (1, 4, 4), (3,))


def _ops(compiled: object) -> Counter[str]:
    graph = compiled.module.graph  # type: ignore[attr-defined]
    return Counter(graph.node(v).op.name for v in graph)


def _check_encrypted(
    model: onnx.ModelProto, x: np.ndarray, options: dict[str, str]
) -> Counter[str]:
    """Compile for one sample, run two samples through real SEAL: within the predicted
    bound of onnxruntime's outputs. Returns the compiled ops."""
    compiled = compile_ckks(model, {"x": x}, 1, options)
    circuit = CkksCircuit(compiled.module, compiled.signature)
    assert circuit.samples_per_run == 1
    for row in (0, 1):
        sample = {"x": x[row : row + 1]}
        encrypted = circuit.run(sample)["y"]
        expected = reference(model, sample)["y"]
        assert np.max(np.abs(encrypted - expected)) <= circuit.error_bound["y"]
    return _ops(compiled)


def test_conv_square_pool_dense_one_sample() -> None:
    """The conv is one stacked mat-vec (its 16 x 32 Toeplitz matrix); the pool, flatten
    and dense layer fold into one diagonal mat-vec: two levels of products, not three."""
    x = np.random.default_rng(0).uniform(-1, 1, size=(16, 1, 4, 4)).astype(np.float32)
    ops = _check_encrypted(_conv_square_pool_dense(), x, SINGLE)
    assert ops["ckks.matvec_stacked"] == 1 and ops["ckks.matvec_diagonal"] == 1
    assert ops["ckks.matmul_plain"] == 0


def test_auto_picks_single_for_a_convolution() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, size=(16, 1, 4, 4)).astype(np.float32)
    compiled = compile_ckks(_conv_square_pool_dense(), {"x": x}, 1, AUTO)
    assert compiled.notes["pack-slots-ckks"].startswith("layout single (estimated")


# One model per op the probe turns into a matrix: x (N, 2, 3, 3) -> y.
PROBED = {
    "pad_transpose_mean": (
        [helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
         helper.make_node("Transpose", ["p"], ["t"], name="swap", perm=[0, 1, 3, 2]),
         helper.make_node("ReduceMean", ["t"], ["y"], name="mean", axes=[3], keepdims=0)],
        {"pads": np.array([0, 0, 1, 0, 0, 0, 0, 1], dtype=np.int64)},
        (2, 4, 4),
    ),
    "global_pool_sum": (
        [helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
         helper.make_node("ReduceSum", ["g", "axes"], ["y"], name="sum", keepdims=1)],
        {"axes": np.array([2, 3], dtype=np.int64)},
        (2, 1, 1),
    ),
    "matmul_concat_broadcast": (
        [helper.make_node("MatMul", ["x", "M"], ["m"], name="rows"),
         helper.make_node("Concat", ["m", "C"], ["c"], name="join", axis=3),
         helper.make_node("Mul", ["c", "S"], ["y"], name="spread")],
        {"M": np.arange(6).reshape(3, 2) / 6 - 0.4, "C": np.ones((1, 2, 3, 1)),
         "S": np.array([[[[1.0, -2.0, 0.5]]]])},
        (2, 3, 3),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PROBED))
def test_linear_ops_through_the_probe(case: str) -> None:
    """Pad, Transpose, ReduceMean / ReduceSum, GlobalAveragePool, MatMul on a 4-D
    sample, Concat with a constant and a broadcast product by a constant: each one
    mat-vec (two in a row fold into one), no op left that moves data between slots."""
    nodes, weights, outputs = PROBED[case]
    x = np.random.default_rng(1).uniform(-1, 1, size=(16, 2, 3, 3)).astype(np.float32)
    ops = _check_encrypted(_model(nodes, weights, (2, 3, 3), outputs), x, SINGLE)
    assert ops["ckks.matvec_stacked"] + ops["ckks.matvec_diagonal"] == 1  # all folded


def test_max_pool_one_sample() -> None:
    """MaxPool, decomposed into gathers, +-1 products and ReLUs, runs in the single
    layout: the gathers and products are probed matrices too."""
    nodes = [helper.make_node("MaxPool", ["x"], ["m"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["m"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W"], ["y"], name="dense")]  # fmt: skip
    weights = {"W": np.random.default_rng(2).normal(size=(8, 2))}
    x = np.random.default_rng(3).uniform(-1, 1, size=(32, 2, 4, 4)).astype(np.float32)
    ops = _check_encrypted(_model(nodes, weights, (2, 4, 4), (2,)), x, SINGLE)
    assert ops["ckks.matvec_stacked"] + ops["ckks.matvec_diagonal"] >= 3


def test_unit_transpose_moves_nothing() -> None:
    """A transpose of a unit axis keeps the flattened order: its matrix is the identity,
    so it becomes a reshape (no mat-vec, no level)."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="swap", perm=[0, 2, 1]),
             helper.make_node("Mul", ["t", "t"], ["y"], name="square")]  # fmt: skip
    x = np.random.default_rng(4).uniform(-1, 1, size=(8, 1, 4)).astype(np.float32)
    ops = _check_encrypted(_model(nodes, {}, (1, 4), (4, 1)), x, SINGLE)
    assert ops["ckks.matvec_stacked"] + ops["ckks.matvec_diagonal"] == 0


def test_single_refuses_a_product_of_two_convolutions() -> None:
    """conv(x) * pool(x): both linear maps, but their product broadcasts (2 channels by
    1), which one ciphertext per value cannot."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["x"], ["m"], name="mean", axes=[1]),
             helper.make_node("Mul", ["c", "m"], ["y"], name="gate")]  # fmt: skip
    model = _model(nodes, {"w": np.ones((2, 1, 3, 3))}, (1, 3, 3), (2, 3, 3))
    x = np.random.default_rng(0).uniform(-1, 1, size=(8, 1, 3, 3)).astype(np.float32)
    with pytest.raises(CompileError) as raised:
        compile_ckks(model, {"x": x}, 1, SINGLE)
    assert "node 'gate' (Mul)" in str(raised.value)
    assert "layout=batch" in str(raised.value)


def test_probe_falls_back_to_one_sample_at_a_time() -> None:
    """A sum over the batch axis too (of one sample: the sample itself) mixes the K unit
    vectors of a one-call probe; probing them one by one gives the right matrix."""
    sample = "tensor<1x3xf32, secret>"
    module = parse_module(f"""module {{
  func @main {{
    %0 = func.input() {{input_name = "x", type = {sample}}} : {sample} loc("x", "Input")
    %1 = tensor.reduce_sum(%0) {{axes = [0, 1], keepdims = true}} : tensor<1x1xf32, secret>
      loc("sum", "ReduceSum")
    return %1 as "y"
  }}
}}""")
    found = affine_map(module.graph, 1)
    assert not isinstance(found, str)
    assert np.array_equal(found.matrix, np.ones((3, 1))) and not np.any(found.shift)


def test_golden_cnn_at_128_bits_one_sample() -> None:
    """The golden CNN (conv 3x3 pad 1, 4 channels -> ReLU -> avg pool 2 -> dense 10),
    batch_size=1, 128-bit security: the conv is one diagonal mat-vec (period 256 = 4 x 8
    x 8), the pool and dense layer one more (folded); each sample's logits within the
    predicted bound of the reference backend's, and the same class."""
    model, report = golden_single(GOLDEN)
    assert report["period"] == 256 and report["galois_keys"] == 15 + 15
    graph = model.module.graph
    assert sum(graph.node(v).op.name == "ckks.matvec_diagonal" for v in graph) == 2
