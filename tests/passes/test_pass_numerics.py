"""Numerics of the rewriting passes: the reference backend gives the same outputs before
and after fold-batchnorm and canonicalize on random inputs; annotate-ranges bounds
every value the interpreter computes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhec.backends.reference import evaluate, evaluate_all
from fhec.ir.errors import FhecError
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, DivOp, MulOp, NegOp, ReluOp, SubOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import BatchNormOp
from fhec.ir.ops.shape import ReshapeOp, TransposeOp
from fhec.ir.types import DType, TensorType
from fhec.passes import PassContext, parse_pipeline, run_pipeline

RNG = np.random.default_rng(20240611)


class Builder:
    """Builds a module op by op; every node gets a location of its own."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.count = 0

    def _location(self, kind: str) -> Location:
        self.count += 1
        return Location(f"{kind}{self.count}", kind)

    def input(self, name: str, shape: tuple[int, ...]) -> ValueId:
        ttype = TensorType(shape, DType.F32)
        return self.graph.add(InputOp(name, ttype), (), ttype, Location(name, "Input"))

    def const(self, array: np.ndarray | float) -> ValueId:
        op = ConstantOp.of(np.asarray(array, dtype=np.float32))
        return self.graph.add(op, (), op.infer(()), self._location("Constant"))

    def random(self, *shape: int) -> ValueId:
        return self.const(RNG.standard_normal(shape).astype(np.float32))

    def __call__(self, op: Op, *operands: ValueId) -> ValueId:
        ttype = op.infer([self.graph.node(o).type for o in operands])
        return self.graph.add(op, operands, ttype, self._location(type(op).__name__))

    def batch_norm(self, x: ValueId, channels: int) -> ValueId:
        scale, bias, mean = (self.random(channels) for _ in range(3))
        var = self.const(RNG.uniform(0.2, 2.0, channels).astype(np.float32))
        return self(BatchNormOp(epsilon=1e-3), x, scale, bias, mean, var)

    def module(self, **outputs: ValueId) -> Module:
        return Module(Function("main", self.graph, list(outputs.items())))


def random_inputs(module: Module, low: float = -2.0, high: float = 2.0) -> dict[str, np.ndarray]:
    feed = {}
    for value in module.function.inputs:
        op = module.graph.node(value).op
        assert isinstance(op, InputOp)
        feed[op.input_name] = RNG.uniform(low, high, op.type.shape).astype(np.float32)
    return feed


def assert_same_outputs(before: Module, after: Module, trials: int = 3) -> None:
    for _ in range(trials):
        feed = random_inputs(before)
        want, got = evaluate(before, feed), evaluate(after, feed)
        for name, expected in want.items():
            np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5, err_msg=name)


def ops_of(module: Module) -> list[str]:
    return [module.graph.node(v).op.name for v in module.graph]


# -- fold-batchnorm ---------------------------------------------------------------


def conv_model(bias: bool, group: int = 1, strides: tuple[int, int] = (1, 1)) -> Module:
    b = Builder()
    x = b.input("x", (2, 4, 5, 5))
    operands = [x, b.random(6, 4 // group, 3, 3)] + ([b.random(6)] if bias else [])
    conv = ConvOp(strides, (1, 1, 1, 1), (1, 1), group=group)
    return b.module(y=b(ReluOp(), b.batch_norm(b(conv, *operands), 6)))


def conv1d_model() -> Module:
    b = Builder()
    conv = ConvOp((1,), (0, 0), (2,), group=1)
    y = b(conv, b.input("x", (1, 3, 9)), b.random(4, 3, 2), b.random(4))
    return b.module(y=b.batch_norm(y, 4))


def gemm_model(
    trans_b: bool, bias_shape: tuple[int, ...] | None, alpha: float, beta: float
) -> Module:
    b = Builder()
    x = b.input("x", (3, 5))
    weights = b.random(4, 5) if trans_b else b.random(5, 4)
    operands = [x, weights] + ([b.random(*bias_shape)] if bias_shape is not None else [])
    gemm = GemmOp(alpha=alpha, beta=beta, trans_b=trans_b)
    return b.module(y=b.batch_norm(b(gemm, *operands), 4))


def matmul_model(batch: bool) -> Module:
    b = Builder()
    x = b.input("x", (2, 3, 5) if batch else (3, 5))
    return b.module(y=b.batch_norm(b(MatMulOp(), x, b.random(5, 4)), 3 if batch else 4))


def shared_conv_model() -> Module:
    b = Builder()
    conv = b(ConvOp((1, 1), (0, 0, 0, 0), (1, 1)), b.input("x", (1, 2, 4, 4)), b.random(3, 2, 1, 1))
    return b.module(y=b(AddOp(), conv, b.batch_norm(conv, 3)))


def input_model() -> Module:
    b = Builder()
    return b.module(y=b.batch_norm(b.input("x", (2, 3, 4, 4)), 3))


BATCHNORM_CASES: dict[str, tuple[Callable[[], Module], bool]] = {
    # name: (model, whether the batch norm folds into the op before it)
    "conv": (lambda: conv_model(bias=False), True),
    "conv_bias_group_strided": (lambda: conv_model(bias=True, group=2, strides=(2, 2)), True),
    "conv1d_dilated": (conv1d_model, True),
    "gemm_trans_b_bias": (lambda: gemm_model(True, (4,), 0.5, 2.0), True),
    "gemm_full_bias": (lambda: gemm_model(False, (3, 4), 1.5, -1.0), True),
    "gemm_row_bias": (lambda: gemm_model(False, (3, 1), 1.0, 0.5), True),
    "gemm_no_bias": (lambda: gemm_model(True, None, 1.0, 1.0), True),
    "matmul": (lambda: matmul_model(batch=False), True),
    "matmul_batched": (lambda: matmul_model(batch=True), False),
    "conv_two_users": (shared_conv_model, False),
    "input": (input_model, False),
}


@pytest.mark.parametrize("case", sorted(BATCHNORM_CASES))
def test_fold_batchnorm_keeps_outputs(case: str) -> None:
    make, folds = BATCHNORM_CASES[case]
    before = make()
    after = run_pipeline(before, parse_pipeline("fold-batchnorm"))
    assert "nn.batch_norm" not in ops_of(after)
    assert ("arith.mul" not in ops_of(after)) == folds
    assert_same_outputs(before, after)


# -- canonicalize -----------------------------------------------------------------


def identities_model() -> Module:
    b = Builder()
    x = b.input("x", (2, 3))
    zero, one = b.const(0.0), b.const(np.ones((2, 3)))
    y = b(AddOp(), b(MulOp(), one, b(SubOp(), x, zero)), zero)
    y = b(NegOp(), b(NegOp(), b(DivOp(), y, one)))
    y = b(ReshapeOp((3, 2)), b(ReshapeOp((6,)), b(ReshapeOp((2, 3)), y)))
    y = b(TransposeOp((1, 0)), b(TransposeOp((1, 0)), b(TransposeOp((1, 0)), y)))
    gemm = GemmOp(alpha=0.5, beta=3.0, trans_b=True)
    z = b(gemm, y, b.random(4, 3), b.random(4))
    z = b(GemmOp(beta=2.0), z, b.random(4, 2), b.const(np.zeros((1, 2))))
    return b.module(y=b(AddOp(), z, b.const(np.zeros((2, 2)))), t=y)


def test_canonicalize_keeps_outputs() -> None:
    before = identities_model()
    after = run_pipeline(before, parse_pipeline("canonicalize"))
    assert ops_of(after).count("tensor.transpose") == 1
    assert ops_of(after).count("tensor.reshape") == 1
    for name in ("arith.add", "arith.sub", "arith.mul", "arith.div", "arith.neg"):
        assert name not in ops_of(after)
    for value in after.graph:
        op = after.graph.node(value).op
        if isinstance(op, GemmOp):
            assert (op.alpha, op.beta, op.trans_b) == (1.0, 1.0, False)
    assert_same_outputs(before, after)


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(4)), st.permutations(range(4)), st.permutations(range(4)))
def test_canonicalize_composes_transposes(p: list[int], q: list[int], r: list[int]) -> None:
    b = Builder()
    y = b.input("x", (2, 3, 4, 5))
    for perm in (p, q, r):
        y = b(TransposeOp(tuple(perm)), y)
    before = b.module(y=y)
    after = run_pipeline(before, parse_pipeline("canonicalize"))
    assert ops_of(after).count("tensor.transpose") <= 1
    feed = random_inputs(before)
    np.testing.assert_array_equal(evaluate(after, feed)["y"], evaluate(before, feed)["y"])


# -- annotate-ranges --------------------------------------------------------------


def ranges_model() -> Module:
    b = Builder()
    x = b.input("x", (1, 2, 5, 5))
    y = b(ConvOp((1, 1), (1, 1, 1, 1), (1, 1)), x, b.random(3, 2, 3, 3), b.random(3))
    y = b(ReluOp(), b.batch_norm(y, 3))
    flat = b(ReshapeOp((1, 75)), y)
    z = b(GemmOp(trans_b=True), flat, b.random(4, 75), b.random(4))
    z = b(SubOp(), b(MulOp(), z, z), b(NegOp(), z))
    return b.module(y=b(MatMulOp(), z, b.random(4, 2)))


def ranges(module: Module) -> dict[ValueId, Interval]:
    found = {}
    for value in module.graph:
        interval = module.graph.node(value).annotation(Interval)
        if interval is not None:
            found[value] = interval
    return found


def test_calibrated_ranges_are_the_hull_of_the_samples() -> None:
    module = ranges_model()
    samples = [random_inputs(module) for _ in range(4)]
    annotated = run_pipeline(module, parse_pipeline("annotate-ranges"), PassContext(samples))
    found = ranges(annotated)
    assert set(found) == set(annotated.graph)
    seen = [evaluate_all(annotated, sample) for sample in samples]
    for value, interval in found.items():
        assert interval.lo == min(float(values[value].min()) for values in seen)
        assert interval.hi == max(float(values[value].max()) for values in seen)


def test_margin_widens_calibrated_ranges() -> None:
    module = ranges_model()
    context = PassContext([random_inputs(module) for _ in range(2)])
    tight = ranges(run_pipeline(module, parse_pipeline("annotate-ranges"), context))
    wide = ranges(run_pipeline(module, parse_pipeline("annotate-ranges{margin=0.25}"), context))
    for value, interval in tight.items():
        assert wide[value].lo == pytest.approx(interval.lo - 0.25 * interval.width)
        assert wide[value].hi == pytest.approx(interval.hi + 0.25 * interval.width)


@pytest.mark.parametrize(("low", "high"), [(-1.0, 1.0), (0.0, 3.0), (-0.5, -0.25)])
def test_interval_ranges_contain_samples_inside_the_input_bounds(low: float, high: float) -> None:
    module = ranges_model()
    pipeline = parse_pipeline(f"annotate-ranges{{input_min={low},input_max={high}}}")
    annotated = run_pipeline(module, pipeline)
    found = ranges(annotated)
    assert len(found) == len(annotated.graph)  # every op of this model has an interval rule
    for _ in range(20):
        values = evaluate_all(annotated, random_inputs(module, low, high))
        for value, interval in found.items():
            slack = 1e-4 * max(1.0, interval.magnitude)  # float32 rounding of the evaluation
            assert interval.lo - slack <= values[value].min(), value
            assert values[value].max() <= interval.hi + slack, value


def test_interval_ranges_ignore_the_input_bounds_with_calibration() -> None:
    module = ranges_model()
    sample = random_inputs(module, 0.0, 0.5)
    pipeline = parse_pipeline("annotate-ranges{input_min=-9.0,input_max=9.0}")
    annotated = run_pipeline(module, pipeline, PassContext([sample]))
    x_range = annotated.graph.node(annotated.function.input_named("x")).annotation(Interval)
    assert x_range == Interval.of(sample["x"])


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("annotate-ranges{margin=-0.1}", "margin must be at least 0"),
        ("annotate-ranges{input_min=2.0,input_max=1.0}", "input_min 2.0 is above input_max 1.0"),
        ("fold-constants{max_elements=-1}", "max_elements must be at least 0"),
    ],
)
def test_bad_option_values(pipeline: str, message: str) -> None:
    with pytest.raises(FhecError, match=message):
        parse_pipeline(pipeline)


# -- the common pipeline on an ONNX model, against onnxruntime --------------------


def conv_bn_model() -> object:
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, *shape: int, positive: bool = False) -> object:
        array = RNG.uniform(0.5, 1.5, shape) if positive else RNG.standard_normal(shape)
        return numpy_helper.from_array(array.astype(np.float32), name)

    bn = ["scale", "bias", "mean"]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", *[f"{n}1" for n in bn], "var1"], ["n"],
                         name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"], name="relu0"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "W2"], ["g"], name="fc", transB=1, alpha=0.5),
        helper.make_node("BatchNormalization", ["g", *[f"{n}2" for n in bn], "var2"], ["y"],
                         name="bn2"),
    ]
    initializers = [init("W", 4, 3, 3, 3), init("B", 4), init("W2", 5, 64)]
    for index, channels in ((1, 4), (2, 5)):
        initializers += [init(f"{n}{index}", channels) for n in bn]
        initializers.append(init(f"var{index}", channels, positive=True))
    graph = helper.make_graph(
        nodes,
        "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_common_pipeline_folds_batch_norms_and_matches_onnxruntime() -> None:
    import onnxruntime

    import fhec

    model = conv_bn_model()
    samples = RNG.standard_normal((6, 3, 4, 4)).astype(np.float32)
    compiled = fhec.compile(model, backend="reference", calibration={"x": samples})
    graph = compiled.module.graph
    names = [graph.node(v).op.name for v in graph]
    assert "nn.batch_norm" not in names and "arith.mul" not in names
    assert all(graph.node(v).annotation(Interval) is not None for v in graph)
    session = onnxruntime.InferenceSession(model.SerializeToString())  # type: ignore[attr-defined]
    x = RNG.standard_normal((3, 3, 4, 4)).astype(np.float32)
    want = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)
