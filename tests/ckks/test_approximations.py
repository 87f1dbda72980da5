"""approximate-activations and expand-polynomials-ckks: fits, errors, depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from fhec.backends.reference import evaluate
from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Function, Graph, Module
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops import elementwise as ew
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.poly import Approximation, ChebyshevOp
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.ir.types import DType, TensorType
from fhec.passes import PassContext, parse_pipeline, run_pipeline

FUNCTIONS: list[tuple[Op, float, float]] = [
    (ew.ReluOp(), -4.0, 3.0),
    (ew.LeakyReluOp(alpha=0.1), -2.0, 2.0),
    (ew.SigmoidOp(), -8.0, 8.0),
    (ew.TanhOp(), -3.0, 3.0),
    (ew.GeluOp(), -4.0, 4.0),
    (ew.SoftplusOp(), -5.0, 5.0),
    (ew.EluOp(alpha=1.0), -3.0, 2.0),
    (ew.SeluOp(), -3.0, 2.0),
    (ew.ExpOp(), -2.0, 1.0),
    (ew.ErfOp(), -2.0, 2.0),
    (ew.SqrtOp(), 0.5, 9.0),
    (ew.AbsOp(), -1.0, 1.0),
    (ew.ClipOp(low=-1.0, high=1.0), -2.0, 2.0),
]


def _module(op: Op, lo: float | None, hi: float | None, extra: list[Op] = ()) -> Module:  # type: ignore[assignment]
    graph = Graph()
    x_type = TensorType((8, 3), DType.F32, True)
    annotations = (Interval(lo, hi),) if lo is not None and hi is not None else ()
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"), annotations)
    operands = [x] + [graph.add(c, [], c.infer([]), Location("p", "Initializer")) for c in extra]
    y = graph.add(
        op, operands, op.infer([graph.node(o).type for o in operands]), Location("act", "Act")
    )
    return Module(Function("main", graph, [("y", y)]))


def _approximated(module: Module, options: str = "") -> tuple[Module, PassContext]:
    context = PassContext()
    spelled = f"approximate-activations{{{options}}}" if options else "approximate-activations"
    return run_pipeline(module, parse_pipeline(spelled), context), context


@pytest.mark.parametrize(("op", "lo", "hi"), FUNCTIONS, ids=lambda v: getattr(v, "name", str(v)))
def test_every_function_fits_on_its_range(op: Op, lo: float, hi: float) -> None:
    result, _ = _approximated(_module(op, lo, hi), "max_degree=127,margin=0.05,relu=chebyshev")
    nodes = [result.graph.node(v) for v in result.graph]
    poly = next(n for n in nodes if isinstance(n.op, ChebyshevOp))
    record = poly.annotation(Approximation)
    assert record is not None and record.function == op.name
    assert record.lo == pytest.approx(
        max(lo - 0.05 * (hi - lo), 0.0 if op.name == "arith.sqrt" else -math.inf)
    )
    grid = np.linspace(record.lo, record.hi, 4001)
    exact = np.asarray(op.evaluate([grid]), dtype=np.float64)
    fitted = np.asarray(poly.op.evaluate([grid]), dtype=np.float64)
    assert np.max(np.abs(fitted - exact)) <= record.max_error * 1.001 + 1e-12
    smooth = op.name not in (
        "nn.relu",
        "nn.leaky_relu",
        "arith.abs",
        "nn.clip",
        "arith.sqrt",
        "nn.elu",
        "nn.selu",
    )
    if smooth:  # analytic functions reach the default target at a modest degree
        assert record.max_error <= 1e-3 and record.degree <= 63
    assert not any(n.op.name == op.name for n in nodes)


def test_degree_follows_the_error_target() -> None:
    coarse, _ = _approximated(_module(ew.SigmoidOp(), -6, 6), "error_target=1e-2,output_error=0")
    fine, _ = _approximated(
        _module(ew.SigmoidOp(), -6, 6), "error_target=1e-6,output_error=0,max_degree=63"
    )
    degree = [
        next(
            m.graph.node(v).annotation(Approximation)
            for v in m.graph
            if m.graph.node(v).annotation(Approximation)
        ).degree
        for m in (coarse, fine)
    ]  # type: ignore[union-attr]
    assert degree[0] < degree[1] and degree[0] in (1, 3, 7, 15) and degree[1] in (15, 31, 63)


def test_unreached_target_is_noted_and_the_error_recorded() -> None:
    result, context = _approximated(_module(ew.ReluOp(), -1, 1), "max_degree=7,relu=chebyshev")
    record = next(
        result.graph.node(v).annotation(Approximation)
        for v in result.graph
        if result.graph.node(v).annotation(Approximation)
    )
    assert record is not None and record.degree <= 7 and record.max_error > 1e-3
    assert any("not reached at degree" in note for note in context.notes.values())
    text = print_module(result)
    assert '#approx{function = "nn.relu", degree = ' in text
    assert parse_module(text) == result


def test_public_activations_are_left_alone() -> None:
    module = _module(ew.SigmoidOp(), -1, 1)
    graph = module.graph
    for value in graph:  # make everything public
        node = graph.node(value)
        graph.set_node(
            value,
            node.__class__(
                node.op
                if not isinstance(node.op, InputOp)
                else InputOp("x", node.type.with_secret(False)),
                node.type.with_secret(False),
                node.location,
                node.annotations,
            ),
        )
    result, _ = _approximated(module)
    assert any(result.graph.node(v).op.name == "nn.sigmoid" for v in result.graph)


def test_no_range_is_a_compile_error_asking_for_calibration() -> None:
    with pytest.raises(
        CompileError,
        match=r"node 'act' \(Act\): nn.tanh on encrypted .* unknown; give calibration data",
    ):
        _approximated(_module(ew.TanhOp(), None, None))


def test_unbounded_range_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="unbounded"):
        _approximated(_module(ew.TanhOp(), -math.inf, 1.0))


def test_sqrt_of_negative_range_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match=r"undefined below 0\.0"):
        _approximated(_module(ew.SqrtOp(), -1.0, 4.0))


def test_prelu_needs_one_slope() -> None:
    shared = ConstantOp.of(np.array([0.25], dtype=np.float32))
    result, _ = _approximated(_module(ew.PReluOp(), -2, 2, [shared]))
    assert not any(
        result.graph.node(v).op.name in ("nn.prelu", "tensor.constant") for v in result.graph
    )
    per_channel = ConstantOp.of(np.array([0.1, 0.2, 0.3], dtype=np.float32))
    with pytest.raises(CompileError, match="needs its operand 1 to be a single constant"):
        _approximated(_module(ew.PReluOp(), -2, 2, [per_channel]))


@pytest.mark.parametrize("degree", [1, 2, 3, 5, 7, 8, 15, 16, 31, 62, 63])
def test_expansion_computes_the_series_at_least_depth(degree: int) -> None:
    rng = np.random.default_rng(degree)
    coefficients = tuple(float(c) for c in rng.normal(size=degree + 1) / np.arange(1, degree + 2))
    graph = Graph()
    x_type = TensorType((5, 2), DType.F64, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"))
    poly = graph.add(ChebyshevOp(coefficients, -2.0, 3.0), [x], x_type, Location("p", "Tanh"))
    module = Module(Function("main", graph, [("y", poly)]))
    expanded = run_pipeline(module, parse_pipeline("expand-polynomials-ckks"), PassContext())
    values = rng.uniform(-2, 3, size=(5, 2))
    want = chebyshev.chebval((2 * values - 1) / 5, np.array(coefficients))
    np.testing.assert_allclose(evaluate(expanded, {"x": values})["y"], want, rtol=1e-9, atol=1e-12)
    depth = _product_depth(expanded)
    bits = math.ceil(math.log2(degree + 1))  # the fewest products deep any evaluation takes
    assert bits + 1 <= depth <= bits + 2  # plus the map to [-1, 1], and at most the scalars' level
    assert all(
        expanded.graph.node(v).annotation(Interval)
        for v in expanded.graph
        if expanded.graph.node(v).type.secret and not isinstance(expanded.graph.node(v).op, InputOp)
    )


def _product_depth(module: Module) -> int:
    depth: dict[int, int] = {}
    graph = module.graph
    for value in graph.topological_order():
        operands = graph.operands(value)
        level = max((depth.get(o, 0) for o in operands), default=0)
        depth[value] = level + (graph.node(value).op.name == "arith.mul")
    return depth[module.function.outputs[0][1]]


def test_the_map_onto_the_unit_interval_folds_into_a_gemm() -> None:
    rng = np.random.default_rng(3)
    graph = Graph()
    x_type = TensorType((6, 4), DType.F64, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"))
    weights = graph.add(
        ConstantOp.of(rng.normal(size=(4, 3))),
        [],
        TensorType((4, 3), DType.F64),
        Location("W", "Initializer"),
    )
    bias = graph.add(
        ConstantOp.of(rng.normal(size=3)),
        [],
        TensorType((3,), DType.F64),
        Location("b", "Initializer"),
    )
    out_type = TensorType((6, 3), DType.F64, True)
    dense = graph.add(
        ew_gemm(), [x, weights, bias], out_type, Location("dense", "Gemm"), (Interval(-3.0, 3.0),)
    )
    coefficients = (0.1, 0.5, 0.0, -0.2)
    poly = graph.add(
        ChebyshevOp(coefficients, -4.0, 4.0), [dense], out_type, Location("act", "Tanh")
    )
    module = Module(Function("main", graph, [("y", poly)]))
    expanded = run_pipeline(module, parse_pipeline("expand-polynomials-ckks"), PassContext())
    values = rng.uniform(-1, 1, size=(6, 4))
    np.testing.assert_allclose(
        evaluate(expanded, {"x": values})["y"], evaluate(module, {"x": values})["y"], rtol=1e-9
    )
    assert _product_depth(expanded) == 2  # degree 3 takes 2 products after the Gemm; no map
    gemm = next(
        expanded.graph.node(v)
        for v in expanded.graph
        if expanded.graph.node(v).op.name == "linalg.gemm"
    )
    assert gemm.annotation(Interval) == Interval(-0.75, 0.75)  # [-3, 3] mapped from [-4, 4]
    unfolded = run_pipeline(
        module, parse_pipeline("expand-polynomials-ckks{fold_into_gemm=false}"), PassContext()
    )
    assert _product_depth(unfolded) == 3  # the map costs a level


def ew_gemm() -> Op:
    from fhec.ir.ops.linalg import GemmOp

    return GemmOp()


def test_a_point_range_still_gets_an_interval() -> None:
    """A value calibrated to one number (say, a constant feature) is fitted on a small
    interval around it rather than refused."""
    result, _ = _approximated(_module(ew.SigmoidOp(), 2.0, 2.0))
    record = next(
        result.graph.node(v).annotation(Approximation)
        for v in result.graph
        if result.graph.node(v).annotation(Approximation)
    )
    assert record is not None and record.lo < 2.0 < record.hi and record.hi - record.lo < 0.01


def test_output_error_must_not_be_negative() -> None:
    with pytest.raises(FhecError, match="output_error must be >= 0"):
        parse_pipeline("approximate-activations{output_error=-1}")


def test_decrypt_takes_a_secret_tensor() -> None:
    from fhec.ir.ops.ckks import DecryptOp

    public = TensorType((4, 2), DType.F32)
    assert DecryptOp("e").infer([public.with_secret(True)]) == public
    with pytest.raises(ValueError, match=r"ckks\.decrypt takes a secret tensor"):
        DecryptOp("e").infer([public])


def test_slope_bounds_the_polynomial_derivative() -> None:
    """#approx slope: the largest |p'| on [lo, hi], what the error bound multiplies the
    input's error by (ReLU's polynomial overshoots 1 a little near the kink)."""
    result, _ = _approximated(
        _module(ew.ReluOp(), -4, 4), "max_degree=15,output_error=0,relu=chebyshev"
    )
    (note,) = [a for v in result.graph if (a := result.graph.node(v).annotation(Approximation))]
    coefficients = next(
        n.op.coefficients
        for v in result.graph
        if isinstance((n := result.graph.node(v)).op, ChebyshevOp)
    )
    grid = np.linspace(-1, 1, 100001)
    slope = np.max(np.abs(chebyshev.chebval(grid, chebyshev.chebder(coefficients))))
    assert note.slope == pytest.approx(slope * 2 / (note.hi - note.lo), rel=1e-6)
    assert 1.0 <= note.slope < 1.5
