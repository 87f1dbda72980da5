"""Elementwise ops: ONNX models through fhec vs onnxruntime, interval soundness, errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import fhec
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.elementwise import (
    AbsOp,
    AddOp,
    ClipOp,
    DivOp,
    EluOp,
    ErfOp,
    ExpOp,
    GeluApproximation,
    GeluOp,
    LeakyReluOp,
    MulOp,
    NegOp,
    PowOp,
    PReluOp,
    ReluOp,
    SeluOp,
    SigmoidOp,
    SoftplusOp,
    SqrtOp,
    SubOp,
    TanhOp,
)
from fhec.ir.types import DType, TensorType

NEWEST_OPSET = onnx.defs.onnx_opset_version()
F32, I32, I64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64

# -- building and running tiny models ---------------------------------------------------


@dataclass
class Case:
    """One ONNX node applied to graph inputs (`inputs`) and initializers (`constants`)."""

    id: str
    op_type: str
    inputs: dict[str, tuple[int, tuple[int, ...]]]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    node_inputs: list[str] | None = None  # default: inputs then constants, in order
    min_opset: int = 13
    positive: bool = False  # inputs drawn away from 0 and negatives (Sqrt, Pow)


def _model(case: Case, opset: int) -> onnx.ModelProto:
    names = case.node_inputs if case.node_inputs is not None else [*case.inputs, *case.constants]
    node = helper.make_node(case.op_type, names, ["y"], name=f"the_{case.op_type}", **case.attrs)
    graph = helper.make_graph(
        [node],
        case.id,
        [helper.make_tensor_value_info(n, t, list(s)) for n, (t, s) in case.inputs.items()],
        [helper.make_empty_tensor_value_info("y")],
        [numpy_helper.from_array(a, n) for n, a in case.constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)  # output types, for the checker


def _feeds(case: Case, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (elem_type, shape) in case.inputs.items():
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        if np.issubdtype(dtype, np.integer):
            values = rng.integers(-20, 21, size=shape)
            values[values == 0] = 7  # nonzero divisors
        elif case.positive:
            values = rng.uniform(0.1, 4.0, size=shape)
        else:
            values = rng.normal(0.0, 2.0, size=shape)
        feeds[name] = values.astype(dtype)
    return feeds


def _compare_with_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    got = fhec.compile(model).run(feeds)["y"]
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


X34 = {"x": (F32, (3, 4))}
CASES = [
    Case("add_bcast", "Add", {"x": (F32, (3, 4)), "b": (F32, (4,))}),
    Case("sub_bcast", "Sub", {"x": (F32, (3, 1)), "b": (F32, (1, 4))}),
    Case("mul_const", "Mul", X34, {"w": np.linspace(-2, 2, 4, dtype=np.float32)}),
    Case("div_bcast", "Div", {"x": (F32, (3, 4)), "b": (F32, (4,))}, positive=True),
    Case("add_int32", "Add", {"x": (I32, (3, 4)), "b": (I32, (3, 4))}),
    Case("sub_int64", "Sub", {"x": (I64, (3, 4)), "b": (I64, (4,))}),
    Case("mul_int64", "Mul", {"x": (I64, (3, 4)), "b": (I64, (3, 4))}),
    Case("div_int32_truncates", "Div", {"x": (I32, (5, 6)), "b": (I32, (5, 6))}),
    Case("div_int64_truncates", "Div", {"x": (I64, (5, 6)), "b": (I64, (6,))}),
    Case("neg", "Neg", X34),
    Case("neg_int32", "Neg", {"x": (I32, (3, 4))}),
    Case("abs", "Abs", X34),
    Case("abs_int64", "Abs", {"x": (I64, (3, 4))}),
    Case("sum_three", "Sum", {"a": (F32, (3, 4)), "b": (F32, (4,)), "c": (F32, (3, 1))}),
    Case("sum_one", "Sum", X34),
    Case("relu", "Relu", X34),
    Case("leaky_relu_default", "LeakyRelu", X34),
    Case("leaky_relu", "LeakyRelu", X34, attrs={"alpha": 0.3}),
    Case("prelu_const_slope", "PRelu", X34, {"s": np.array([0.1, -0.5, 2.0, 0.0], np.float32)}),
    Case("prelu_input_slope", "PRelu", {"x": (F32, (2, 3, 4)), "s": (F32, (3, 1))}),
    Case("sigmoid", "Sigmoid", {"x": (F32, (4, 25))}),
    Case("tanh", "Tanh", X34),
    Case("softplus", "Softplus", {"x": (F32, (4, 25))}),
    Case("elu_default", "Elu", X34),
    Case("elu", "Elu", X34, attrs={"alpha": 0.4}),
    Case("selu_default", "Selu", X34),
    Case("selu", "Selu", X34, attrs={"alpha": 2.0, "gamma": 0.5}),
    Case("gelu_none", "Gelu", {"x": (F32, (4, 25))}, min_opset=20),
    Case("gelu_tanh", "Gelu", {"x": (F32, (4, 25))}, attrs={"approximate": "tanh"}, min_opset=20),
    Case("erf", "Erf", {"x": (F32, (4, 25))}),
    Case("exp", "Exp", X34),
    Case("sqrt", "Sqrt", X34, positive=True),
    Case("pow_square", "Pow", X34, {"e": np.array(2.0, np.float32)}),
    Case("pow_cube_int_exponent", "Pow", X34, {"e": np.array(3, np.int64)}),
    Case("pow_half", "Pow", X34, {"e": np.array(0.5, np.float32)}, positive=True),
    Case("pow_inverse", "Pow", X34, {"e": np.array(-1.0, np.float32)}, positive=True),
    Case("pow_repeated_tensor", "Pow", X34, {"e": np.full((4,), 1.5, np.float32)}, positive=True),
    Case("pow_int32", "Pow", {"x": (I32, (3, 4))}, {"e": np.array(3, np.int64)}),
    Case(
        "clip_both",
        "Clip",
        X34,
        {"lo": np.array(-1.0, np.float32), "hi": np.array(0.5, np.float32)},
    ),
    Case("clip_min_only", "Clip", X34, {"lo": np.array(-0.5, np.float32)}),
    Case(
        "clip_max_only", "Clip", X34, {"hi": np.array(1.0, np.float32)}, node_inputs=["x", "", "hi"]
    ),
    Case("clip_no_bounds", "Clip", X34),
    Case(
        "clip_min_above_max",
        "Clip",
        X34,
        {"lo": np.array(2.0, np.float32), "hi": np.array(-1.0, np.float32)},
    ),
    Case(
        "clip_int32",
        "Clip",
        {"x": (I32, (3, 4))},
        {"lo": np.array(-5, np.int32), "hi": np.array(6, np.int32)},
    ),
    Case("identity", "Identity", X34),
    Case("dropout", "Dropout", X34),
    Case("dropout_ratio", "Dropout", X34, {"r": np.array(0.3, np.float32)}),
    Case(
        "dropout_training_false",
        "Dropout",
        X34,
        {"r": np.array(0.3, np.float32), "t": np.array(False)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_onnxruntime_at_first_opset(case: Case) -> None:
    _compare_with_onnxruntime(_model(case, case.min_opset), _feeds(case, seed=0))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_onnxruntime_at_newest_opset(case: Case) -> None:
    _compare_with_onnxruntime(_model(case, NEWEST_OPSET), _feeds(case, seed=1))


def test_integer_division_truncates_toward_zero() -> None:
    case = Case("div", "Div", {"x": (I32, (6,)), "b": (I32, (6,))})
    x = np.array([7, -7, 7, -7, 6, -1], np.int32)
    b = np.array([2, 2, -2, -2, 3, 5], np.int32)
    got = fhec.compile(_model(case, 13)).run({"x": x, "b": b})["y"]
    np.testing.assert_array_equal(got, [3, -3, -3, 3, 2, 0])


def test_sum_of_three_is_a_chain_of_adds() -> None:
    case = Case("sum", "Sum", {"a": (F32, (2,)), "b": (F32, (2,)), "c": (F32, (2,))})
    ir = fhec.compile(_model(case, 13)).ir
    assert ir.count("arith.add(") == 2


def test_identity_and_dropout_emit_no_node() -> None:
    for op_type in ("Identity", "Dropout"):
        ir = fhec.compile(_model(Case(op_type, op_type, X34), 13)).ir
        assert "func.input" in ir
        assert op_type not in ir  # no node carries its location


CONSTANT_ATTRIBUTES = [
    ("value", numpy_helper.from_array(np.arange(4, dtype=np.float32) - 1.5), np.float32),
    ("value_float", 2.5, np.float32),
    ("value_floats", [1.0, -2.0, 0.25, 4.0], np.float32),
    ("value_int", 3, np.int64),
    ("value_ints", [1, -2, 3, 4], np.int64),
]


@pytest.mark.parametrize(("attribute", "value", "dtype"), CONSTANT_ATTRIBUTES)
def test_constant_attributes_match_onnxruntime(attribute: str, value: object, dtype: type) -> None:
    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Constant", [], ["c"], name="the_constant", **{attribute: value}),
        helper.make_node("Add", ["x", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("x", elem_type, [3, 4])],
        [helper.make_empty_tensor_value_info("y")],
    )
    model = onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    )
    feeds = {"x": np.arange(12).reshape(3, 4).astype(dtype)}
    _compare_with_onnxruntime(model, feeds)


# -- interval rules: every evaluated value lies in the interval --------------------------

UNARY_OPS: list[Op] = [
    NegOp(),
    AbsOp(),
    SqrtOp(),
    ExpOp(),
    ErfOp(),
    ReluOp(),
    LeakyReluOp(),
    LeakyReluOp(alpha=-0.5),
    SigmoidOp(),
    TanhOp(),
    SoftplusOp(),
    EluOp(),
    EluOp(alpha=-0.7),
    SeluOp(),
    SeluOp(alpha=0.5, gamma=-2.0),
    GeluOp(),
    GeluOp(GeluApproximation.TANH),
    ClipOp(low=-1.0, high=0.5),
    ClipOp(low=0.2),
    ClipOp(high=-0.3),
    ClipOp(low=1.0, high=-1.0),
    *[PowOp(e) for e in (0.0, 1.0, 2.0, 3.0, 4.0, -1.0, -2.0, 0.5, 1.5, -0.5)],
]
BINARY_OPS: list[Op] = [AddOp(), SubOp(), MulOp(), DivOp(), PReluOp()]


def _random_intervals(seed: int, count: int = 60) -> list[Interval]:
    rng = np.random.default_rng(seed)
    ends = rng.normal(0.0, 3.0, size=(count, 2))
    intervals = [Interval(float(min(a, b)), float(max(a, b))) for a, b in ends]
    # Around GELU's minimum, at 0, one-sided, and a single point.
    specials = [(-0.8, -0.7), (-0.752, -0.751), (0.0, 2.0), (-2.0, 0.0), (1.5, 1.5), (-5, -4)]
    return intervals + [Interval(float(a), float(b)) for a, b in specials]


def _samples(interval: Interval, rng: np.random.Generator) -> np.ndarray:
    inner = rng.uniform(interval.lo, interval.hi, size=200)
    return np.concatenate([[interval.lo, interval.hi], inner]).astype(np.float64)


def _assert_inside(values: np.ndarray, bound: Interval, what: str) -> None:
    values = values[~np.isnan(values)]
    assert values.size, what
    assert bound.lo <= values.min() and values.max() <= bound.hi, (
        f"{what}: values in [{values.min()}, {values.max()}], bound [{bound.lo}, {bound.hi}]"
    )


@pytest.mark.parametrize("op", UNARY_OPS, ids=repr)
def test_unary_interval_is_sound(op: Op) -> None:
    rng = np.random.default_rng(3)
    bounded = 0
    for interval in _random_intervals(seed=4):
        bound = op.interval([interval], [None])
        if bound is None:
            continue
        bounded += 1
        values = op.evaluate([_samples(interval, rng)])
        assert not np.isnan(values).any(), f"{op} gives a bound where it is undefined"
        _assert_inside(values, bound, f"{op} on {interval}")
    assert bounded >= 10  # the rule is not vacuous (Sqrt and x**0.5 need x >= 0)


@pytest.mark.parametrize("op", BINARY_OPS, ids=repr)
def test_binary_interval_is_sound(op: Op) -> None:
    rng = np.random.default_rng(5)
    pairs = zip(_random_intervals(seed=6), _random_intervals(seed=7), strict=True)
    bounded = 0
    for x, y in pairs:
        bound = op.interval([x, y], [None, None])
        if bound is None:
            assert isinstance(op, DivOp) and y.lo <= 0.0 <= y.hi
            continue
        bounded += 1
        xs, ys = _samples(x, rng), _samples(y, rng)
        values = op.evaluate([xs[:, None], ys[None, :]])  # every pair
        _assert_inside(values, bound, f"{op} on {x}, {y}")
    assert bounded >= 20


def test_integer_division_interval_is_sound() -> None:
    rng = np.random.default_rng(8)
    op = DivOp(truncate=True)
    for _ in range(200):
        x_lo, x_hi = sorted(rng.integers(-50, 50, size=2))
        y_lo, y_hi = sorted(rng.integers(1, 9, size=2) * rng.choice([-1, 1]))
        bound = op.interval([Interval(x_lo, x_hi), Interval(y_lo, y_hi)], [None, None])
        assert bound is not None
        xs = np.arange(x_lo, x_hi + 1, dtype=np.int64)
        ys = np.arange(y_lo, y_hi + 1, dtype=np.int64)
        values = op.evaluate([xs[:, None], ys[None, :]])
        _assert_inside(values.astype(np.float64), bound, f"trunc div {x_lo, x_hi} / {y_lo, y_hi}")


@pytest.mark.parametrize(
    ("op", "operands", "expected"),
    [
        (AbsOp(), [Interval(-3.0, 2.0)], Interval(0.0, 3.0)),
        (AbsOp(), [Interval(-3.0, -1.0)], Interval(1.0, 3.0)),
        (PowOp(2.0), [Interval(-3.0, 2.0)], Interval(0.0, 9.0)),
        (PowOp(3.0), [Interval(-3.0, 2.0)], Interval(-27.0, 8.0)),
        (PowOp(-1.0), [Interval(-3.0, 2.0)], None),  # a pole at 0
        (PowOp(0.5), [Interval(-1.0, 4.0)], None),  # NaN below 0
        (PowOp(0.5), [Interval(1.0, 4.0)], Interval(1.0, 2.0)),
        (SqrtOp(), [Interval(-1.0, 4.0)], None),
        (NegOp(), [Interval(-1.0, 4.0)], Interval(-4.0, 1.0)),
        (ClipOp(low=-1.0, high=0.5), [Interval(-3.0, 0.0)], Interval(-1.0, 0.0)),
        (ClipOp(low=2.0, high=-1.0), [Interval(-3.0, 5.0)], Interval(-1.0, -1.0)),
        (LeakyReluOp(alpha=0.1), [Interval(-10.0, 2.0)], Interval(-1.0, 2.0)),
        (EluOp(alpha=2.0), [Interval(-np.inf, 1.0)], Interval(-2.0, 1.0)),
        (DivOp(), [Interval(1.0, 2.0), Interval(-1.0, 1.0)], None),
        (DivOp(), [Interval(1.0, 2.0), Interval(0.0, 1.0)], None),
        (DivOp(), [Interval(-1.0, 2.0), Interval(4.0, 8.0)], Interval(-0.25, 0.5)),
        (DivOp(truncate=True), [Interval(-7.0, 7.0), Interval(2.0, 2.0)], Interval(-3.0, 3.0)),
        (PReluOp(), [Interval(-2.0, 3.0), Interval(-1.0, 0.5)], Interval(-1.0, 3.0)),
        (AddOp(), [Interval(-2.0, 3.0), Interval(1.0, 2.0)], Interval(-1.0, 5.0)),
    ],
    ids=repr,
)
def test_interval_values(op: Op, operands: list[Interval], expected: Interval | None) -> None:
    constants: list[np.ndarray | None] = [None] * len(operands)
    assert op.interval(operands, constants) == expected


@pytest.mark.parametrize("approximate", list(GeluApproximation))
def test_gelu_interval_across_the_minimum_is_tight(approximate: GeluApproximation) -> None:
    op = GeluOp(approximate)
    bound = op.interval([Interval(-3.0, 1.0)], [None])
    assert bound is not None
    grid = op.evaluate([np.linspace(-3.0, 1.0, 400001)])
    assert bound.lo <= grid.min() < bound.lo + 1e-4
    assert bound.hi == pytest.approx(grid.max())


# -- errors name the node and its op type --------------------------------------------------


def _single_node_model(
    node: onnx.NodeProto,
    inputs: Sequence[tuple[str, int, Sequence[int]]],
    constants: dict[str, np.ndarray] | None = None,
    outputs: Sequence[str] = ("y",),
    opset: int = 13,
    extra_nodes: Sequence[onnx.NodeProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node, *extra_nodes],
        "errors",
        [helper.make_tensor_value_info(n, t, list(s)) for n, t, s in inputs],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(a, n) for n, a in (constants or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)  # output types, for the checker


def _compile_error(model: onnx.ModelProto) -> str:
    with pytest.raises(fhec.CompileError) as info:
        fhec.compile(model)
    return str(info.value)


def _node(
    op_type: str, inputs: Sequence[str], outputs: Sequence[str] = ("y",), **attrs: object
) -> onnx.NodeProto:
    return helper.make_node(op_type, list(inputs), list(outputs), name="bad_node", **attrs)


X = ("x", F32, (3, 4))
ErrorCase = tuple[str, Callable[[], onnx.ModelProto], Sequence[str]]
ERROR_CASES: list[ErrorCase] = [
    (
        "pow_exponent_input",
        lambda: _single_node_model(_node("Pow", ["x", "e"]), [X, ("e", F32, ())]),
        ["node 'bad_node' (Pow)", "exponent", "must be a constant"],
    ),
    (
        "pow_exponent_varies",
        lambda: _single_node_model(
            _node("Pow", ["x", "e"]), [X], {"e": np.array([1, 2, 2, 3], np.float32)}
        ),
        ["node 'bad_node' (Pow)", "3 different values"],
    ),
    (
        "pow_exponent_broadcasts_base",
        lambda: _single_node_model(
            _node("Pow", ["x", "e"]), [X], {"e": np.full((2, 3, 4), 2.0, np.float32)}
        ),
        ["node 'bad_node' (Pow)", "broadcasts the base of shape (3, 4)"],
    ),
    (
        "pow_integer_base_fractional_exponent",
        lambda: _single_node_model(
            _node("Pow", ["x", "e"]), [("x", I32, (3,))], {"e": np.array(0.5, np.float32)}
        ),
        ["node 'bad_node' (Pow)", "non-negative integral exponent, found 0.5"],
    ),
    (
        "clip_min_input",
        lambda: _single_node_model(_node("Clip", ["x", "lo"]), [X, ("lo", F32, ())]),
        ["node 'bad_node' (Clip)", "min bound", "must be a constant"],
    ),
    (
        "clip_max_input",
        lambda: _single_node_model(_node("Clip", ["x", "", "hi"]), [X, ("hi", F32, ())]),
        ["node 'bad_node' (Clip)", "max bound", "must be a constant"],
    ),
    (
        "clip_bound_not_scalar",
        lambda: _single_node_model(
            _node("Clip", ["x", "lo"]), [X], {"lo": np.array([0.0, 1.0], np.float32)}
        ),
        ["node 'bad_node' (Clip)", "shape (2,)", "takes a scalar"],
    ),
    (
        "clip_bound_not_a_float",
        lambda: _single_node_model(
            _node("Clip", ["x", "lo"]), [("x", I64, (3,))], {"lo": np.array(2**60 + 1, np.int64)}
        ),
        ["node 'bad_node' (Clip)", f"min bound {2**60 + 1}", "no exact float64"],
    ),
    (
        "dropout_mask_used_later",
        lambda: _single_node_model(
            _node("Dropout", ["x"], ["d", "mask"]),
            [X],
            extra_nodes=[helper.make_node("Cast", ["mask"], ["y"], to=F32)],
        ),
        ["node 'bad_node' (Dropout)", "mask output 'mask' is used"],
    ),
    (
        "dropout_mask_is_output",
        lambda: _single_node_model(
            _node("Dropout", ["x"], ["y", "mask"]), [X], outputs=["y", "mask"]
        ),
        ["node 'bad_node' (Dropout)", "mask output 'mask' is used"],
    ),
    (
        "dropout_training_true",
        lambda: _single_node_model(_node("Dropout", ["x", "", "t"]), [X], {"t": np.array(True)}),
        ["node 'bad_node' (Dropout)", "training_mode is true"],
    ),
    (
        "dropout_training_input",
        lambda: _single_node_model(
            _node("Dropout", ["x", "", "t"]), [X, ("t", TensorProto.BOOL, ())]
        ),
        ["node 'bad_node' (Dropout)", "training_mode is not a constant"],
    ),
    (
        "constant_sparse",
        lambda: _single_node_model(
            _node(
                "Constant",
                [],
                sparse_value=helper.make_sparse_tensor(
                    helper.make_tensor("v", F32, [1], [2.0]),
                    helper.make_tensor("i", I64, [1], [1]),
                    [4],
                ),
            ),
            [],
        ),
        ["node 'bad_node' (Constant)", "attribute sparse_value is not supported"],
    ),
    (
        "constant_string",
        lambda: _single_node_model(_node("Constant", [], value_string="text"), []),
        ["node 'bad_node' (Constant)", "attribute value_string is not supported"],
    ),
    (
        "constant_float16",
        lambda: _single_node_model(
            _node("Constant", [], value=numpy_helper.from_array(np.ones(2, np.float16))), []
        ),
        ["node 'bad_node' (Constant)", "element type float16 is not supported"],
    ),
    (
        "gelu_unknown_approximation",
        lambda: _single_node_model(_node("Gelu", ["x"], approximate="fast"), [X], opset=20),
        ["node 'bad_node' (Gelu)", "approximate='fast'"],
    ),
    (
        "erf_on_integers",
        lambda: _single_node_model(_node("Erf", ["x"]), [("x", I32, (3,))]),
        ["node 'bad_node' (Erf)", "arith.erf takes floating-point tensors, found i32"],
    ),
    (
        "prelu_slope_too_big",
        lambda: _single_node_model(
            _node("PRelu", ["x", "s"]), [("x", F32, (4,)), ("s", F32, (3, 4))]
        ),
        ["node 'bad_node' (PRelu)", "does not broadcast to the input's shape (4,)"],
    ),
]


@pytest.mark.parametrize(
    ("name", "build", "fragments"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_unsupported_models_fail_naming_the_node(
    name: str, build: Callable[[], onnx.ModelProto], fragments: Sequence[str]
) -> None:
    message = _compile_error(build())
    for fragment in fragments:
        assert fragment in message


def test_div_type_rule_ties_truncation_to_integers() -> None:
    with pytest.raises(ValueError, match="needs truncate=true"):
        DivOp().infer([TensorType((2,), DType.I32)] * 2)
    with pytest.raises(ValueError, match="needs truncate=false"):
        DivOp(truncate=True).infer([TensorType((2,), DType.F32)] * 2)
