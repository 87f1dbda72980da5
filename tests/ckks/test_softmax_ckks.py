"""decompose-max-softmax-ckks: MaxPool and Softmax in the middle of a model compile for
CKKS, compute what the ops do (reference backend on the compiled module), and run with
real SEAL within the predicted error bound."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from ckks_helpers import compile_ckks, reference
from onnx import TensorProto, helper, numpy_helper

from fhec.backends.ckks import CKKS_BACKEND
from fhec.backends.reference import evaluate
from fhec.ir.errors import CompileError
from fhec.ir.graph import Function, Graph, Module
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.nn import LogSoftmaxOp, MaxPoolOp, SoftmaxOp
from fhec.ir.ops.poly import Approximation
from fhec.ir.types import DType, TensorType
from fhec.passes import PassContext, parse_pipeline, run_pipeline


def _model(
    nodes: list[onnx.NodeProto], weights: dict[str, np.ndarray], x: list[object], y: list[object]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "mid",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _one_op(op: Op, shape: tuple[int, ...], lo: float, hi: float) -> Module:
    graph = Graph()
    x_type = TensorType(shape, DType.F32, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"), (Interval(lo, hi),))
    y = graph.add(op, [x], op.infer([x_type]), Location("op", "Op"))
    return Module(Function("main", graph, [("y", y)]))


def _decomposed(module: Module, samples: list[dict[str, np.ndarray]]) -> Module:
    passes = parse_pipeline("decompose-max-softmax-ckks")
    return run_pipeline(module, passes, PassContext(samples), verify_each=True)


@pytest.mark.parametrize(
    "op",
    [
        MaxPoolOp((2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),
        MaxPoolOp((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),  # odd taps, pads
        MaxPoolOp((2, 3), (1, 2), (0, 1, 0, 1), (1, 1), ceil_mode=True),
    ],
    ids=["2x2", "3x3-pads", "2x3-ceil"],
)
def test_max_pool_becomes_a_tree_of_relu_maxima(op: MaxPoolOp) -> None:
    """The decomposed graph (exact ReLU) computes MaxPool, and every new value
    has a calibrated range; one ReLU per tree level."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 5, 5)).astype(np.float32)
    module = _decomposed(_one_op(op, x.shape, -3, 3), [{"x": x}])
    graph = module.graph
    assert not any(isinstance(graph.node(v).op, MaxPoolOp) for v in graph)
    relus = [v for v in graph if graph.node(v).op.name == "nn.relu"]
    taps = int(np.prod(op.kernel))
    assert len(relus) == int(np.ceil(np.log2(taps)))
    assert all(graph.node(v).annotation(Interval) for v in graph if graph.node(v).type.secret)
    want = op.evaluate([x])  # b + (a - b) in float32: within a rounding of max(a, b)
    np.testing.assert_allclose(evaluate(module, {"x": x})["y"], want, rtol=3e-7, atol=1e-7)


def test_softmax_becomes_exp_sum_reciprocal_product() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4)).astype(np.float32) * 2
    op = SoftmaxOp(axis=-1)
    module = _decomposed(_one_op(op, x.shape, float(x.min()), float(x.max())), [{"x": x}])
    names = [module.graph.node(v).op.name for v in module.graph.topological_order()]
    assert "nn.softmax" not in names
    assert {"arith.exp", "linalg.matmul", "arith.pow", "arith.mul"} <= set(names)
    np.testing.assert_allclose(evaluate(module, {"x": x})["y"], op.evaluate([x]), rtol=1e-5)
    exps = next(v for v in module.graph if module.graph.node(v).op.name == "arith.exp")
    assert module.graph.node(exps).annotation(Interval).hi == pytest.approx(1.0)  # type: ignore[union-attr]


def test_log_softmax_becomes_x_minus_log_of_sums() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4)).astype(np.float32) * 2
    op = LogSoftmaxOp(axis=1)
    module = _decomposed(_one_op(op, x.shape, float(x.min()), float(x.max())), [{"x": x}])
    names = [module.graph.node(v).op.name for v in module.graph.topological_order()]
    assert "nn.log_softmax" not in names and {"arith.exp", "arith.log"} <= set(names)
    np.testing.assert_allclose(evaluate(module, {"x": x})["y"], op.evaluate([x]), atol=1e-5)


def test_softmax_ranges_without_calibration_come_from_interval_rules() -> None:
    module = _decomposed(_one_op(SoftmaxOp(axis=1), (2, 3), -1.0, 1.0), [])
    sums = next(v for v in module.graph if module.graph.node(v).op.name == "linalg.matmul")
    bounds = module.graph.node(sums).annotation(Interval)
    assert bounds is not None and bounds.lo == pytest.approx(3 * np.exp(-2.0), rel=1e-6)
    assert bounds.hi == pytest.approx(3.0)


def test_softmax_over_another_axis_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match=r"node 'op' \(Op\): softmax over axis 1 .* last axis"):
        _decomposed(_one_op(SoftmaxOp(axis=1), (2, 3, 4), -1.0, 1.0), [])


def test_softmax_without_a_range_is_a_compile_error() -> None:
    graph = Graph()
    x_type = TensorType((2, 3), DType.F32, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"))
    y = graph.add(SoftmaxOp(), [x], x_type, Location("op", "Op"))
    with pytest.raises(CompileError, match="needs its input's range"):
        _decomposed(Module(Function("main", graph, [("y", y)])), [])


def test_reciprocal_of_a_range_reaching_zero_is_a_compile_error() -> None:
    from fhec.ir.ops.elementwise import PowOp

    module = _one_op(PowOp(exponent=-1.0), (2, 3), -0.5, 2.0)
    with pytest.raises(CompileError, match=r"arith.pow is undefined at 0.0 and below"):
        run_pipeline(module, parse_pipeline("approximate-activations"), PassContext())


def _within_bound(model: onnx.ModelProto, x: np.ndarray, options: dict[str, str]) -> float:
    compiled = compile_ckks(model, {"x": x}, batch_size=x.shape[0], options=options)
    assert any(
        compiled.module.graph.node(v).annotation(Approximation) for v in compiled.module.graph
    )
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    got = circuit.run({"x": x})["y"].astype(np.float64)
    measured = float(np.max(np.abs(got - reference(model, {"x": x})["y"])))
    bound = circuit.error_bound["y"]
    assert measured <= bound, f"measured {measured:.3g} over the bound {bound:.3g}"
    print(f"\nerror {measured:.3g}, bound {bound:.3g}, depth {circuit.report()['depth']}")
    return measured


def test_softmax_mid_model_with_real_seal() -> None:
    """Gemm -> Softmax -> Gemm: the softmax runs on the server, within the bound."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="dense1"),
        helper.make_node("Softmax", ["h"], ["s"], name="softmax", axis=-1),
        helper.make_node("Gemm", ["s", "W2"], ["y"], name="dense2"),
    ]
    weights = {
        "W1": rng.normal(size=(4, 3)),
        "b1": rng.normal(size=3),
        "W2": rng.normal(size=(3, 2)),
    }
    model = _model(nodes, weights, ["N", 4], ["N", 2])
    x = rng.uniform(-1, 1, (32, 4)).astype(np.float32)
    options = {
        "select-params-ckks": "security=0",
        "approximate-activations": "output_error=0,error_target=1e-4,max_degree=31",
    }
    assert _within_bound(model, x, options) < 1e-4


def test_log_softmax_mid_model_with_real_seal() -> None:
    """Gemm -> LogSoftmax -> Gemm: exp, sums and log on the server, within the bound."""
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("Gemm", ["x", "W1"], ["h"], name="dense1"),
        helper.make_node("LogSoftmax", ["h"], ["s"], name="logsoftmax", axis=-1),
        helper.make_node("Gemm", ["s", "W2"], ["y"], name="dense2"),
    ]
    weights = {"W1": rng.normal(size=(4, 3)), "W2": rng.normal(size=(3, 2))}
    model = _model(nodes, weights, ["N", 4], ["N", 2])
    x = rng.uniform(-1, 1, (32, 4)).astype(np.float32)
    options = {
        "select-params-ckks": "security=0",
        "approximate-activations": "output_error=0,error_target=1e-4,max_degree=31",
    }
    assert _within_bound(model, x, options) < 1e-3


def test_max_pool_mid_model_with_real_seal() -> None:
    """MaxPool 2x2 -> Flatten -> Gemm: two tree levels of composite-sign maxima."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W"], ["y"], name="dense"),
    ]
    model = _model(nodes, {"W": rng.normal(size=(4, 2))}, ["N", 1, 4, 4], ["N", 2])
    x = rng.uniform(-1, 1, (16, 1, 4, 4)).astype(np.float32)
    options = {
        "select-params-ckks": "security=0",
        "approximate-activations": "relu=composite,sign_stages=2",
    }
    _within_bound(model, x, options)
