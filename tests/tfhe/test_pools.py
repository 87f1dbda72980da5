"""MaxPool between encrypted layers: window maxima of the quantized activations through
lookups, max(a, b) = a + relu(b - a), computed exactly (real concrete, no mocks)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from tfhe_helpers import build, conv_model, lower, one_by_one, samples

from fhec.ir.errors import CompileError
from fhec.ir.ops.linalg import ConvOp
from fhec.ir.ops.tfhe import LookupOp, RoundOp

EXACT = {"quantize_tfhe": "bits=4", "round_accumulators": "bits=5,approximate=false,max_bits=0"}
CALIBRATION = {"x": samples(64, features=36).reshape(64, 1, 6, 6)}
HELD_OUT = {"x": samples(10, features=36, seed=5).reshape(10, 1, 6, 6)}


@pytest.fixture(scope="module")
def max_pooled() -> tuple[object, object]:
    return build(conv_model(pool="MaxPool"), CALIBRATION, **EXACT)


def test_max_pool_costs_three_exact_lookups_per_window(max_pooled: tuple[object, object]) -> None:
    lowered, circuit = max_pooled
    graph = lowered.module.graph  # type: ignore[attr-defined]
    lookups = [graph.node(v) for v in graph if isinstance(graph.node(v).op, LookupOp)]
    sources = [graph.node(graph.operands(v)[0]).op for v in graph
               if isinstance(graph.node(v).op, LookupOp)]  # fmt: skip
    # the Conv's ReLU (one per output) and the pool's three maxima per 2x2 window
    assert sum(n.type.size for n in lookups) == 2 * 6 * 6 + 3 * 2 * 3 * 3
    assert sum(isinstance(op, RoundOp) for op in sources) == 1  # the pool's are not rounded
    convolutions = [graph.node(v).op for v in graph if isinstance(graph.node(v).op, ConvOp)]
    taps = [op for op in convolutions if op.group == 2]
    assert len(taps) == 4  # one one-hot tap per kernel position
    report = circuit.report()  # type: ignore[attr-defined]
    assert report["lookups"] == 2 * 6 * 6 + 3 * 2 * 3 * 3
    # the relu of a difference of two 4-bit activations reads 5 bits
    assert report["max_lookup_bits"] == 5


def test_max_pool_simulates_the_integer_model_exactly(max_pooled: tuple[object, object]) -> None:
    lowered, circuit = max_pooled
    clear = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(one_by_one(circuit, HELD_OUT, "simulate", 10)["y"], clear)


def test_max_pool_integers_are_the_window_maxima_of_the_quantized_activations() -> None:
    """The pooled integers equal nn.max_pool of the quantizer's integers, pads included."""
    model = conv_model(pool="MaxPool", pool_pads=1)
    quantized = lower(model, CALIBRATION, until="quantize-tfhe", quantize_tfhe="bits=4")
    lowered = lower(model, CALIBRATION, quantize_tfhe="bits=4", round_accumulators="bits=0")
    # quantized model (float QDQ) and integer module agree: the max commutes with both
    np.testing.assert_allclose(
        lowered.run(HELD_OUT)["y"], quantized.run(HELD_OUT)["y"], rtol=1e-4, atol=1e-4
    )


@pytest.mark.slow
def test_max_pool_runs_encrypted_exactly(max_pooled: tuple[object, object]) -> None:
    lowered, circuit = max_pooled
    clear = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(one_by_one(circuit, HELD_OUT, "execute", 1)["y"], clear[:1])


def test_max_pool_with_ceil_mode_between_layers_is_refused() -> None:
    with pytest.raises(CompileError, match="MaxPool with ceil_mode") as caught:
        lower(conv_model(pool="MaxPool", ceil_mode=1), CALIBRATION)
    assert "pool" in str(caught.value)  # the node's name


def test_max_pool_after_an_average_pool_between_layers_is_refused() -> None:
    """The average pool's window sums are no activation's quantized integers: their
    bounds (and the max pool's lookup) are unknown."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "k"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("AveragePool", ["r"], ["a"], name="mean", kernel_shape=[2, 2]),
        helper.make_node("MaxPool", ["a"], ["p"], name="max", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "w"], ["y"], name="dense"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "mean_then_max",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match="must read an activation's quantized output") as caught:
        lower(model, CALIBRATION)
    assert "'max'" in str(caught.value)
