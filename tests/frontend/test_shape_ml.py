"""Layout / reduction ops and the ai.onnx.ml converters: ONNX models through fhec vs
onnxruntime (tiny onnx.helper models and real skl2onnx / PyTorch exports), the ops'
type and interval rules, and every CompileError a converter raises."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import fhec
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.shape import (
    ArgMaxOp,
    CastOp,
    ConcatOp,
    GatherOp,
    PadOp,
    ReduceMaxOp,
    ReduceMeanOp,
    ReduceSumOp,
    ReshapeOp,
    TransposeOp,
)
from fhec.ir.types import DType, TensorType

F32, F64, I32, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64
ML = "ai.onnx.ml"

# -- building and running tiny models ---------------------------------------------------


@dataclass
class Case:
    """One ONNX node named `the_<op_type>` on graph inputs and initializers."""

    id: str
    op_type: str
    inputs: dict[str, tuple[int, tuple[int, ...]]]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    node_inputs: list[str] | None = None  # default: inputs then constants, in order
    opset: int = 13
    outputs: int = 1
    domain: str = ""


def _model(case: Case) -> onnx.ModelProto:
    names = case.node_inputs if case.node_inputs is not None else [*case.inputs, *case.constants]
    outputs = ["y", "z"][: case.outputs]
    node = helper.make_node(
        case.op_type, names, outputs, name=f"the_{case.op_type}", domain=case.domain, **case.attrs
    )
    graph = helper.make_graph(
        [node],
        case.id,
        [helper.make_tensor_value_info(n, t, list(s)) for n, (t, s) in case.inputs.items()],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in case.constants.items()],
    )
    opsets = [helper.make_opsetid("", case.opset), helper.make_opsetid(ML, 1)]
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=opsets))
    for output in model.graph.output:
        if not output.type.tensor_type.HasField("shape"):  # no inference: fhec rejects it
            output.CopyFrom(helper.make_tensor_value_info(output.name, F32, ["unknown"]))
    return model


def _feeds(case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (elem_type, shape) in case.inputs.items():
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[name] = rng.integers(-20, 21, size=shape).astype(dtype)
        else:
            feeds[name] = rng.normal(0.0, 2.0, size=shape).astype(dtype)
    return feeds


def _onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[object]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def _assert_matches(got: np.ndarray, want: object) -> None:
    """Integers (labels, indices) exactly; floats at rtol 1e-4, atol 1e-5."""
    want = np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, want)


def _compare(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    expected = _onnxruntime(model, feeds)
    batch = next(iter(feeds.values())).shape[0] if feeds else 1
    got = fhec.compile(model, batch_size=batch).run(feeds)
    for output, want in zip(model.graph.output, expected, strict=True):
        _assert_matches(got[output.name], want)


def _compile_error(case: Case, match: str) -> None:
    """Compiling `case` fails with a CompileError naming its node and op type."""
    where = rf"node 'the_{case.op_type}' \({case.op_type}\): "
    with pytest.raises(fhec.CompileError, match=where + ".*" + match):
        fhec.compile(_model(case))


# -- layout and reduction converters vs onnxruntime ---------------------------------

X234 = {"x": (F32, (2, 3, 4))}
X23 = {"x": (F32, (2, 3))}


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


LAYOUT_CASES = [
    Case("flatten_default", "Flatten", X234),
    Case("flatten_axis0", "Flatten", X234, attrs={"axis": 0}),
    Case("flatten_axis_last", "Flatten", X234, attrs={"axis": 3}),
    Case("flatten_axis_negative", "Flatten", X234, attrs={"axis": -1}),
    Case("reshape_copy_and_infer", "Reshape", X234, {"s": _i64(0, -1)}),
    Case("reshape_flat", "Reshape", X234, {"s": _i64(-1)}),
    Case("reshape_zero_in_middle", "Reshape", X234, {"s": _i64(4, 0, -1)}),
    Case("reshape_allowzero", "Reshape", X234, {"s": _i64(6, 4)}, {"allowzero": 1}, opset=14),
    Case("transpose_default", "Transpose", X234),
    Case("transpose_perm", "Transpose", X234, attrs={"perm": [1, 2, 0]}),
    Case("squeeze_axes", "Squeeze", {"x": (F32, (2, 1, 3))}, {"a": _i64(1)}),
    Case("squeeze_all_ones", "Squeeze", {"x": (F32, (1, 2, 1, 3))}),
    Case("squeeze_negative_axis", "Squeeze", {"x": (F32, (2, 1, 3))}, {"a": _i64(-2)}),
    Case("squeeze_opset11_attr", "Squeeze", {"x": (F32, (2, 1, 3))}, attrs={"axes": [1]}, opset=11),
    Case("unsqueeze_two", "Unsqueeze", X23, {"a": _i64(0, 3)}),
    Case("unsqueeze_unsorted", "Unsqueeze", X23, {"a": _i64(2, 0)}),
    Case("unsqueeze_negative", "Unsqueeze", X23, {"a": _i64(-1)}),
    Case("concat_const", "Concat", X23, {"c": np.ones((2, 2), np.float32)}, {"axis": 1}),
    Case(
        "concat_three_negative_axis",
        "Concat",
        {"x": (F32, (2, 3)), "w": (F32, (2, 1))},
        {"c": np.zeros((2, 2), np.float32)},
        {"axis": -1},
    ),
    Case("concat_axis0", "Concat", {"x": (F32, (2, 3)), "w": (F32, (4, 3))}, attrs={"axis": 0}),
    Case("pad_value", "Pad", X23, {"p": _i64(0, 1, 2, 0), "v": np.array(1.5, np.float32)}),
    Case("pad_default_zero", "Pad", X23, {"p": _i64(1, 1, 1, 1)}),
    Case("pad_negative_crops", "Pad", X234, {"p": _i64(-1, 1, 0, 0, 0, -2)}),
    Case(
        "pad_int32",
        "Pad",
        {"x": (I32, (2, 3))},
        {"p": _i64(1, 0, 0, 2), "v": np.array(7, np.int32)},
    ),
    Case(
        "pad_axes",
        "Pad",
        X234,
        {"p": _i64(2, 1), "v": np.array(-3.0, np.float32), "a": _i64(-1)},
        opset=18,
    ),
    Case("pad_explicit_constant_mode", "Pad", X23, {"p": _i64(0, 1, 0, 1)}, {"mode": "constant"}),
    Case("reduce_sum_axis", "ReduceSum", X234, {"a": _i64(1)}, {"keepdims": 0}),
    Case("reduce_sum_all", "ReduceSum", X234),
    Case("reduce_sum_negative_axes", "ReduceSum", X234, {"a": _i64(-1, 0)}),
    Case("reduce_sum_noop", "ReduceSum", X234, attrs={"noop_with_empty_axes": 1}),
    Case("reduce_sum_int64", "ReduceSum", {"x": (I64, (3, 5))}, {"a": _i64(1)}),
    Case("reduce_mean_attr_axes", "ReduceMean", X234, attrs={"axes": [0, 2]}),
    Case("reduce_mean_input_axes", "ReduceMean", X234, {"a": _i64(1)}, {"keepdims": 0}, opset=18),
    Case("reduce_mean_all", "ReduceMean", X234, attrs={"keepdims": 0}),
    Case("reduce_max_attr_axes", "ReduceMax", X234, attrs={"axes": [-1]}),
    Case("reduce_max_input_axes", "ReduceMax", X234, {"a": _i64(0, 1)}, opset=18),
    Case("reduce_max_all", "ReduceMax", X234),
    Case("argmax_axis1", "ArgMax", X234, attrs={"axis": 1, "keepdims": 0}),
    Case("argmax_default", "ArgMax", X234),
    Case("argmax_negative_axis", "ArgMax", X234, attrs={"axis": -1}),
    Case("gather_axis1", "Gather", X234, {"i": np.array([[0, 2], [-1, 0]], np.int64)}, {"axis": 1}),
    Case("gather_scalar_index", "Gather", X234, {"i": np.array(1, np.int64)}),
    Case("gather_int32_indices", "Gather", X234, {"i": np.array([3, -4], np.int32)}, {"axis": 2}),
    Case("cast_to_int32_truncates", "Cast", X23, attrs={"to": I32}),
    Case("cast_int64_to_float", "Cast", {"x": (I64, (2, 3))}, attrs={"to": F32}),
    Case("cast_to_bool", "Cast", {"x": (I32, (3, 5))}, attrs={"to": TensorProto.BOOL}),
    Case("cast_to_double", "Cast", X23, attrs={"to": F64}),
    Case("cast_same_type", "Cast", X23, attrs={"to": F32}),
    Case("shape", "Shape", X234),
    Case("shape_start_end", "Shape", X234, attrs={"start": 1, "end": -1}, opset=15),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda c: c.id)
def test_layout_and_reductions_match_onnxruntime(case: Case) -> None:
    _compare(_model(case), _feeds(case))


def test_argmax_ties_pick_first_or_last_index() -> None:
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], np.float32)
    for last in (0, 1):
        case = Case(
            "argmax", "ArgMax", {"x": (F32, (2, 4))}, attrs={"axis": 1, "select_last_index": last}
        )
        _compare(_model(case), {"x": x})


def test_cast_truncates_toward_zero() -> None:
    case = Case("cast", "Cast", {"x": (F32, (6,))}, attrs={"to": I32})
    x = np.array([1.7, -1.7, 2.5, -2.5, 0.4, -0.4], np.float32)
    got = fhec.compile(_model(case)).run({"x": x})["y"]
    np.testing.assert_array_equal(got, [1, -1, 2, -2, 0, 0])


def test_noop_reduction_and_same_type_cast_emit_no_node() -> None:
    for case in (
        Case("noop", "ReduceSum", X234, attrs={"noop_with_empty_axes": 1}),
        Case("cast", "Cast", X23, attrs={"to": F32}),
    ):
        ir = fhec.compile(_model(case)).ir
        assert case.op_type not in ir  # no node carries its location


def test_shape_arithmetic_folds_into_a_static_reshape() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape, as PyTorch writes x.view(n, -1)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="the_Reshape"),
    ]
    constants = {"zero": np.array(0, np.int64), "axes0": _i64(0), "minus1": _i64(-1)}
    graph = helper.make_graph(
        nodes,
        "view",
        [helper.make_tensor_value_info("x", F32, ["N", 3, 4])],
        [helper.make_tensor_value_info("y", F32, ["N", 12])],
        [numpy_helper.from_array(a, n) for n, a in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    compiled = fhec.compile(model)  # batch 1, run on 5 samples one at a time
    assert "tensor.reshape(%0) {shape = [1, 12]}" in compiled.ir
    _assert_matches(compiled.run({"x": x})["y"], _onnxruntime(model, {"x": x})[0])


def test_pytorch_view_export_matches_onnxruntime() -> None:
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, x: object) -> object:
            return self.fc(x.view(x.size(0), -1))  # type: ignore[attr-defined]

    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Net(),
            (torch.randn(2, 3, 4),),
            buffer,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}},
            dynamo=False,
            opset_version=13,
            do_constant_folding=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    assert {"Shape", "Gather", "Concat", "Reshape"} <= {n.op_type for n in model.graph.node}
    x = np.random.default_rng(1).normal(size=(5, 3, 4)).astype(np.float32)
    got = fhec.compile(model).run({"x": x})["y"]
    _assert_matches(got, _onnxruntime(model, {"x": x})[0])


# -- CompileErrors of the layout converters ------------------------------------------

ERROR_CASES = [
    (
        Case("e", "Reshape", {"x": (F32, (2, 3)), "s": (I64, (1,))}),
        r"the target shape .* must be a constant",
    ),
    (Case("e", "Reshape", X234, {"s": _i64(-1, -1)}), r"at most one -1"),
    (Case("e", "Reshape", X234, {"s": _i64(5, -1)}), r"-1 has no whole size"),
    (Case("e", "Reshape", X23, {"s": _i64(3, 2, 0)}), r"0 at position 2 copies no input axis"),
    (Case("e", "Reshape", X23, {"s": _i64(5, 5)}), r"cannot reshape \(2, 3\)"),
    (Case("e", "Flatten", X23, attrs={"axis": 3}), r"axis=3 is out of range"),
    (Case("e", "Transpose", X234, attrs={"perm": [0, 0, 1]}), r"not a permutation"),
    (Case("e", "Squeeze", X23, {"a": _i64(1)}), r"cannot squeeze axis 1 .* not 1"),
    (Case("e", "Unsqueeze", X23, {"a": np.zeros(0, np.int64)}), r"axes are empty"),
    (Case("e", "Concat", X23, {"c": np.ones((3, 3), np.float32)}, {"axis": 1}), r"cannot concat"),
    (Case("e", "Pad", X23, {"p": _i64(1, 1)}), r"pads=\[1, 1\] need 2 entries for each of the 2"),
    (Case("e", "Pad", X23, {"p": _i64(0, -2, 0, -2)}), r"crop \(2, 3\) below zero"),
    (Case("e", "Pad", {"x": (F32, (2, 3)), "p": (I64, (4,))}), r"pads .* must be a constant"),
    (Case("e", "ReduceSum", X23, {"a": _i64(2)}), r"axes entry=2 is out of range"),
    (Case("e", "ReduceSum", X23, {"a": _i64(1, -1)}), r"name an axis twice"),
    (Case("e", "ReduceSum", {"x": (F32, (2, 3)), "a": (I64, (1,))}), r"axes .* must be a constant"),
    (Case("e", "ArgMax", X23, attrs={"axis": 2}), r"axis=2 is out of range"),
    (
        Case("e", "Gather", {"x": (F32, (2, 3)), "i": (I64, (2,))}),
        r"the indices .* must be a constant",
    ),
    (Case("e", "Gather", X23, {"i": _i64(0, 3)}, {"axis": 1}), r"out of range for an axis of 3"),
    (
        Case("e", "Cast", X23, attrs={"to": TensorProto.FLOAT16}),
        r"element type FLOAT16 is not supported",
    ),
]


@pytest.mark.parametrize(("case", "match"), ERROR_CASES, ids=lambda c: getattr(c, "op_type", ""))
def test_layout_errors_name_the_node(case: Case, match: str) -> None:
    _compile_error(case, match)


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
def test_pad_modes_other_than_constant_are_rejected(mode: str) -> None:
    case = Case("pad", "Pad", X23, {"p": _i64(0, 1, 0, 1)}, {"mode": mode}, opset=19)
    _compile_error(case, rf"mode='{mode}' is not supported: only constant padding")


# -- the ops themselves: type rules, semantics, interval rules ------------------------

T234 = TensorType((2, 3, 4), DType.F32, secret=True)


@pytest.mark.parametrize(
    ("op", "operands", "message"),
    [
        (ReshapeOp((5, 5)), [T234], "cannot reshape"),
        (ReshapeOp((-1, 24)), [T234], "cannot reshape"),
        (TransposeOp((0, 1)), [T234], "not a permutation"),
        (ConcatOp(3), [T234, T234], "out of range"),
        (ConcatOp(0), [T234, TensorType((2, 3, 5), DType.F32)], "cannot concat"),
        (ConcatOp(0), [T234, TensorType((2, 3, 4), DType.F64)], "cannot concat f32 and f64"),
        (PadOp((1, 1)), [T234], "need 2 entries per axis"),
        (PadOp((0, -3, 0, 0, -1, 0)), [T234], "below zero"),
        (ReduceSumOp((3,)), [T234], "out of range"),
        (ReduceMeanOp((1, 1)), [T234], "repeat an axis"),
        (ArgMaxOp(-1), [T234], "out of range"),
        (GatherOp(0), [T234, TensorType((2,), DType.F32)], "indices must be integers"),
    ],
)
def test_type_rules_reject_operands_that_do_not_fit(
    op: Op, operands: list[TensorType], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        op.infer(operands)


def test_type_rules_give_shapes_dtypes_and_secrecy() -> None:
    plain = TensorType((2, 3, 4), DType.F32)
    assert ConcatOp(1).infer([plain, T234]) == TensorType((2, 6, 4), DType.F32, secret=True)
    assert ArgMaxOp(2, keepdims=False).infer([T234]) == TensorType((2, 3), DType.I64, True)
    assert ReduceMaxOp((0, 2), keepdims=True).infer([T234]).shape == (1, 3, 1)
    assert CastOp(DType.I32).infer([T234]) == TensorType((2, 3, 4), DType.I32, True)
    indices = TensorType((5,), DType.I64, secret=True)
    labels = TensorType((3,), DType.I64)
    assert GatherOp(0).infer([labels, indices]) == TensorType((5,), DType.I64, True)


def test_pad_crops_with_negative_pads() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = PadOp((-1, 1, 1, -2), value=9.0).evaluate([x])
    want = np.pad(x[1:, :2], [(0, 1), (1, 0)], constant_values=9.0)
    np.testing.assert_array_equal(got, want)


RANGE_OPS: list[tuple[Op, Sequence[tuple[int, ...]]]] = [
    (ReshapeOp((4, 6)), [(2, 3, 4)]),
    (TransposeOp((2, 0, 1)), [(2, 3, 4)]),
    (ConcatOp(1), [(2, 3), (2, 5)]),
    (PadOp((1, 0, 0, 2), value=7.5), [(2, 3)]),
    (PadOp((-1, 0, 0, 0)), [(2, 3)]),
    (ReduceSumOp((1,), keepdims=False), [(2, 6)]),
    (ReduceSumOp((0, 1)), [(4, 5)]),
    (ReduceMeanOp((0,)), [(5, 3)]),
    (ReduceMaxOp((1,)), [(5, 3)]),
    (ArgMaxOp(1), [(4, 7)]),
    (CastOp(DType.I32), [(4, 5)]),
    (CastOp(DType.BOOL), [(4, 5)]),
    (CastOp(DType.F64), [(4, 5)]),
]


@pytest.mark.parametrize(("op", "shapes"), RANGE_OPS, ids=lambda v: getattr(v, "name", ""))
def test_interval_rules_are_sound(op: Op, shapes: Sequence[tuple[int, ...]]) -> None:
    rng = np.random.default_rng(3)
    for low, high in [(-2.0, 3.0), (0.5, 4.0), (-6.0, -1.0)]:
        arrays = [rng.uniform(low, high, size=s).astype(np.float32) for s in shapes]
        arrays = [np.clip(a, low, high) for a in arrays]
        types = [TensorType(s, DType.F32) for s in shapes]
        bound = op.interval_with_types(
            [Interval(low, high)] * len(shapes), [None] * len(shapes), types
        )
        assert bound is not None
        result = np.asarray(op.evaluate(arrays), dtype=np.float64)
        assert bound.lo <= result.min() and result.max() <= bound.hi, (bound, result)


def test_interval_rules_are_tight_where_they_can_be() -> None:
    x = Interval(-1.0, 2.0)
    summed = ReduceSumOp((1,)).interval_with_types([x], [None], [TensorType((3, 6), DType.F32)])
    assert summed == Interval(-6.0, 12.0)  # six terms
    assert ArgMaxOp(1).interval_with_types(
        [x], [None], [TensorType((3, 6), DType.F32)]
    ) == Interval(0.0, 5.0)
    assert PadOp((1, 0), value=5.0).interval([x], [None]) == Interval(-1.0, 5.0)
    assert CastOp(DType.I8).interval([Interval(-1.5, 2.7)], [None]) == Interval(-1.0, 2.0)
    assert CastOp(DType.I8).interval([Interval(0.0, 300.0)], [None]) is None  # wraps
    assert GatherOp(0).interval([x, Interval(0.0, 3.0)], [None, None]) == x


# -- ai.onnx.ml: real scikit-learn exports ---------------------------------------------


def _zipmap_as_array(rows: list[dict[object, float]]) -> np.ndarray:
    """onnxruntime's ZipMap output (a list of {label: probability}) in class order."""
    labels = sorted(rows[0])
    return np.array([[row[label] for label in labels] for row in rows], dtype=np.float32)


def _compare_sklearn(estimator: object, x: np.ndarray) -> dict[str, np.ndarray]:
    from skl2onnx import to_onnx

    x = x.astype(np.float32)
    model = to_onnx(estimator, x[:1])
    expected = _onnxruntime(model, {"X": x})
    got = fhec.compile(model, batch_size=len(x)).run({"X": x})
    for output, want in zip(model.graph.output, expected, strict=True):
        if isinstance(want, list):
            want = _zipmap_as_array(want)
        _assert_matches(got[output.name], want)
    return got


@pytest.fixture(scope="module")
def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return x, y


def _fit(estimator: object, x: np.ndarray, y: np.ndarray) -> object:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # unscaled data: fine here
        return estimator.fit(x, y)  # type: ignore[attr-defined]


def test_binary_logistic_regression_matches_onnxruntime(
    breast_cancer: tuple[np.ndarray, np.ndarray],
) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = breast_cancer
    got = _compare_sklearn(_fit(LogisticRegression(max_iter=300), x, y), x)
    assert set(np.unique(got["output_label"])) == {0, 1}
    assert got["output_probability"].shape == (len(x), 2)


def test_multiclass_logistic_regression_matches_onnxruntime() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    got = _compare_sklearn(_fit(LogisticRegression(max_iter=200), x, y), x)
    assert got["output_probability"].shape == (len(x), 10)


def test_linear_regression_matches_onnxruntime() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    x, y = load_diabetes(return_X_y=True)
    _compare_sklearn(LinearRegression().fit(x, y), x)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_normalizer_pipeline_matches_onnxruntime(
    norm: str, breast_cancer: tuple[np.ndarray, np.ndarray]
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    x, y = breast_cancer
    pipeline = make_pipeline(Normalizer(norm=norm), LogisticRegression(max_iter=300))
    _compare_sklearn(_fit(pipeline, x, y), x)


# -- ai.onnx.ml: tiny models for each attribute ---------------------------------------

X_SAMPLES = np.array(
    [[1.0, -1.0], [0.1, 0.2], [-3.0, 0.5], [0.5, -0.375], [0.0, 0.0], [2.0, 4.0]], np.float32
)


def _classifier(**attrs: object) -> Case:
    return Case("lc", "LinearClassifier", {"x": (F32, (6, 2))}, attrs=attrs, outputs=2, domain=ML)


# Three targets; the second scores exactly 0 for every sample, the third 1e-8 * x0:
# SOFTMAX_ZERO treats both as dropped.
THREE_TARGETS = {
    "coefficients": [1.0, 2.0, 0.0, 0.0, 1e-8, 0.0],
    "intercepts": [0.25, 0.0, 0.0],
}


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_linear_classifier_matches_onnxruntime(transform: str) -> None:
    case = _classifier(classlabels_ints=[3, 7, 9], post_transform=transform, **THREE_TARGETS)
    _compare(_model(case), {"x": X_SAMPLES})


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_binary_linear_classifier_with_one_score_matches_onnxruntime(transform: str) -> None:
    # Scores -0.75, 0.75, -1.75, 0 (a tie goes to the first label), 0.25, 10.25.
    case = _classifier(
        coefficients=[1.0, 2.0],
        intercepts=[0.25],
        classlabels_ints=[3, 7],
        post_transform=transform,
    )
    x = X_SAMPLES.copy()
    x[3] = [-0.25, 0.0]
    _compare(_model(case), {"x": x})


def test_linear_classifier_on_doubles_and_vectors() -> None:
    doubles = Case(
        "lc",
        "LinearClassifier",
        {"x": (F64, (6, 2))},
        attrs={"classlabels_ints": [0, 1, 2], **THREE_TARGETS},
        outputs=2,
        domain=ML,
    )
    _compare(_model(doubles), {"x": X_SAMPLES.astype(np.float64)})
    vector = Case(
        "lc",
        "LinearClassifier",
        {"x": (F32, (2,))},
        attrs={"classlabels_ints": [0, 1, 2], **THREE_TARGETS},
        outputs=2,
        domain=ML,
    )
    feeds = {"x": X_SAMPLES[0]}
    expected = _onnxruntime(_model(vector), feeds)
    got = fhec.compile(_model(vector)).run(feeds)
    _assert_matches(got["y"], expected[0])
    _assert_matches(got["z"], expected[1])


@pytest.mark.parametrize("intercepts", [{"intercepts": [0.5, -1.0]}, {}], ids=["with", "without"])
def test_linear_regressor_matches_onnxruntime(intercepts: dict[str, list[float]]) -> None:
    case = Case(
        "lr",
        "LinearRegressor",
        {"x": (F32, (6, 2))},
        domain=ML,
        attrs={"coefficients": [1.0, 2.0, -0.5, 3.0], "targets": 2, **intercepts},
    )
    _compare(_model(case), {"x": X_SAMPLES})


NORMALIZER_ROWS = np.array(
    [[1.0, -2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.0, -2.0], [-1.0, -4.0, -0.5], [1e-30, 0, 0]],
    np.float32,
)


@pytest.mark.parametrize("norm", ["MAX", "L1", "L2"])
@pytest.mark.parametrize("elem_type", [F32, F64])
def test_normalizer_matches_onnxruntime_including_zero_norm_rows(norm: str, elem_type: int) -> None:
    case = Case("n", "Normalizer", {"x": (elem_type, (5, 3))}, attrs={"norm": norm}, domain=ML)
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    _compare(_model(case), {"x": NORMALIZER_ROWS.astype(dtype)})


def test_softmax_zero_rows_with_tiny_scores_match_onnxruntime() -> None:
    # Scores straddling the 1e-7 threshold by one float32 ulp, and very negative rows.
    threshold = np.float32(1e-7)
    above = np.nextafter(threshold, np.float32(1))
    case = Case(
        "sz",
        "LinearClassifier",
        {"x": (F32, (5, 3))},
        outputs=2,
        domain=ML,
        attrs={
            "coefficients": list(np.eye(3, dtype=np.float32).ravel()),
            "intercepts": [0.0] * 3,
            "classlabels_ints": [0, 1, 2],
            "post_transform": "SOFTMAX_ZERO",
        },
    )
    x = np.array(
        [
            [threshold, above, -above],
            [threshold, -threshold, 0.0],
            [-200.0, -150.0, -300.0],
            [-200.0, 0.0, 1e-9],
            [3.0, -threshold, 1.0],
        ],
        np.float32,
    )
    _compare(_model(case), {"x": x})


def test_zipmap_returns_the_probability_tensor() -> None:
    case = Case(
        "zm",
        "ZipMap",
        {"x": (F32, (4, 3))},
        domain=ML,
        attrs={"classlabels_strings": ["a", "b", "c"]},
    )
    x = np.random.default_rng(0).uniform(size=(4, 3)).astype(np.float32)
    model = _model(case)
    model.graph.output[0].CopyFrom(
        helper.make_value_info(
            "y",
            helper.make_sequence_type_proto(
                helper.make_map_type_proto(
                    TensorProto.STRING, helper.make_tensor_type_proto(F32, [])
                )
            ),
        )
    )
    want = _zipmap_as_array(_onnxruntime(model, {"x": x})[0])  # type: ignore[arg-type]
    _assert_matches(fhec.compile(model, batch_size=4).run({"x": x})["y"], want)


# -- CompileErrors of the ai.onnx.ml converters ---------------------------------------

ML_ERROR_CASES = [
    (
        _classifier(coefficients=[1.0, 2.0], intercepts=[0.0], classlabels_strings=["a", "b"]),
        r"string class labels are not supported",
    ),
    (
        _classifier(
            coefficients=[1.0, 2.0],
            intercepts=[0.0],
            classlabels_ints=[0, 1],
            post_transform="PROBIT",
        ),
        r"post_transform=PROBIT is not supported",
    ),
    (
        _classifier(coefficients=[1.0, 2.0, 3.0], intercepts=[0.0, 0.0], classlabels_ints=[0, 1]),
        r"3 coefficients do not fit 2 target\(s\) x 2 features",
    ),
    (_classifier(classlabels_ints=[0, 1], **THREE_TARGETS), r"2 class labels for 3 score columns"),
    (_classifier(**THREE_TARGETS), r"class labels are missing"),
    (_classifier(coefficients=[1.0, 2.0], classlabels_ints=[0, 1]), r"intercepts are missing"),
    (
        _classifier(coefficients=[1.0, 2.0], intercepts=[0.0], classlabels_ints=[0, 1, 2]),
        r"one score column needs 2 class labels, found 3",
    ),
    (
        Case(
            "lr",
            "LinearRegressor",
            {"x": (F32, (6, 2))},
            domain=ML,
            attrs={"coefficients": [1.0, 2.0], "post_transform": "SOFTMAX"},
        ),
        r"post_transform=SOFTMAX is not supported",
    ),
    (
        Case(
            "lr",
            "LinearRegressor",
            {"x": (F32, (6, 2))},
            domain=ML,
            attrs={
                "coefficients": [1.0, 2.0, 3.0, 4.0],
                "intercepts": [1.0, 2.0, 3.0],
                "targets": 2,
            },
        ),
        r"3 intercepts for 2 target\(s\)",
    ),
    (
        Case(
            "lr",
            "LinearRegressor",
            {"x": (F32, (2, 3, 2))},
            domain=ML,
            attrs={"coefficients": [1.0, 2.0]},
        ),
        r"input of shape \(2, 3, 2\): expected \(samples, features\)",
    ),
    (
        Case("n", "Normalizer", {"x": (F32, (2, 3, 2))}, domain=ML),
        r"input of rank 3: Normalizer takes a vector or a matrix",
    ),
    (
        Case("n", "Normalizer", {"x": (F32, (2, 3))}, domain=ML, attrs={"norm": "L3"}),
        r"norm='L3' is not one of MAX, L1, L2",
    ),
    (
        Case("zm", "ZipMap", {"x": (F32, (2, 3))}, domain=ML, attrs={"classlabels_int64s": [1, 2]}),
        r"2 class labels for 3 probability columns",
    ),
]


@pytest.mark.parametrize(("case", "match"), ML_ERROR_CASES, ids=lambda c: getattr(c, "op_type", ""))
def test_ml_errors_name_the_node(case: Case, match: str) -> None:
    _compile_error(case, match)


# -- ONNX's node cases whose axes / shapes / pads / indices are graph inputs ---------

UNSUPPORTED_LISTS = Path(__file__).resolve().parents[1] / "onnx_node" / "expected_unsupported"
FROZEN_OPS = (
    "Gather",
    "Pad",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
)


def _cases_with_input_operands() -> list[object]:
    """Node cases listed as unsupported only because an operand fhec needs constant is a
    graph input: frozen into initializers, they test the converters on ONNX's own data."""
    from onnx.backend.test.case.node import collect_testcases

    names = set()
    for op_type in FROZEN_OPS:
        for line in (UNSUPPORTED_LISTS / f"{op_type}.txt").read_text().splitlines():
            name, _, reason = line.partition(":")
            if "is a model input" in reason or "are a model input" in reason:
                names.add(name.strip())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = [c for c in collect_testcases(None) if c.name in names]
    return [pytest.param(c, id=c.name) for c in sorted(cases, key=lambda c: c.name)]


def _freeze_inputs(model: onnx.ModelProto, values: Sequence[np.ndarray]) -> onnx.ModelProto:
    """`model` with graph inputs 1, 2, ... turned into initializers holding `values[1:]`."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = frozen.graph.input[0]
    for graph_input, value in zip(model.graph.input[1:], values[1:], strict=True):
        frozen.graph.initializer.append(
            numpy_helper.from_array(np.asarray(value), graph_input.name)
        )
    del frozen.graph.input[:]
    frozen.graph.input.append(kept)
    return frozen


@pytest.mark.parametrize("case", _cases_with_input_operands())
def test_node_cases_with_constant_operands_match_onnx(case: object) -> None:
    for inputs, expected in case.data_sets:  # type: ignore[attr-defined]
        model = _freeze_inputs(case.model, inputs)  # type: ignore[attr-defined]
        got = fhec.compile(model).run({model.graph.input[0].name: inputs[0]})
        for output, want in zip(model.graph.output, expected, strict=True):
            want = np.asarray(want)
            assert got[output.name].shape == want.shape
            np.testing.assert_allclose(got[output.name], want, rtol=1e-4, atol=1e-5)
