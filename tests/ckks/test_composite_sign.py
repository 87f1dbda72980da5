"""Composite sign polynomials for ReLU, LeakyReLU, PRelu and Abs: the stages, the
recorded bound (it holds on dense samples and is not vacuous), the auto choice, the
expansion, and a real SEAL run within the predicted error bound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ckks_helpers import compile_ckks, reference, tiny_model
from onnx import helper

from fhec.backends.ckks import CKKS_BACKEND
from fhec.backends.reference import evaluate
from fhec.ir.errors import FhecError
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
from fhec.passes.composite_sign import CHEON_F3, CHEON_G3, Composite, best_composite, cheon_f

DENSE = np.unique(np.concatenate([np.linspace(-1, 1, 400001), np.geomspace(1e-9, 1, 20001)]))


def _module(
    op: Op, lo: float, hi: float, extra: tuple[Op, ...] = (), shape: tuple[int, ...] = (4, 3)
) -> Module:
    graph = Graph()
    x_type = TensorType(shape, DType.F64, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"), (Interval(lo, hi),))
    operands = [x] + [graph.add(c, [], c.infer([]), Location("p", "Initializer")) for c in extra]
    types = [graph.node(o).type for o in operands]
    y = graph.add(op, operands, op.infer(types), Location("act", "Act"))
    return Module(Function("main", graph, [("y", y)]))


def _approximated(module: Module, options: str) -> tuple[Module, PassContext]:
    context = PassContext()
    passes = parse_pipeline(f"approximate-activations{{{options}}}")
    return run_pipeline(module, passes, context, verify_each=True), context


def _record(module: Module) -> Approximation:
    (record,) = [a for v in module.graph if (a := module.graph.node(v).annotation(Approximation))]
    return record


def test_cheon_f_stages_are_the_papers() -> None:
    assert cheon_f(1) == pytest.approx((0.0, 1.5, 0.0, -0.5))  # (3x - x^3) / 2
    f3 = (0.0, 35 / 16, 0.0, -35 / 16, 0.0, 21 / 16, 0.0, -5 / 16)
    assert pytest.approx(f3) == CHEON_F3


@pytest.mark.parametrize("stage", [CHEON_F3, CHEON_G3], ids=["f3", "g3"])
def test_stages_are_odd_and_map_the_unit_interval_into_itself(stage: tuple[float, ...]) -> None:
    composite = Composite((stage,))
    values = composite.sign(DENSE)
    np.testing.assert_allclose(composite.sign(-DENSE), -values, atol=1e-15)
    assert np.all(np.abs(values) <= 1.0 + 1e-12)
    assert composite.slope(np.array([0.0]))[0] > 2.0  # steeper than x at 0: it sharpens


def test_more_stages_reach_smaller_errors() -> None:
    factors = [best_composite(0.0, stages)[1] for stages in range(1, 6)]
    assert all(b < a for a, b in itertools.pairwise(factors))
    assert factors[-1] < 1e-3


KINKED: list[tuple[Op, tuple[Op, ...], float, float]] = [
    (ew.ReluOp(), (), -4.0, 3.0),
    (ew.AbsOp(), (), -1.0, 2.5),
    (ew.LeakyReluOp(alpha=0.1), (), -2.0, 2.0),
    (ew.PReluOp(), (ConstantOp.of(np.array([0.25])),), -3.0, 1.0),
]


@pytest.mark.parametrize(("op", "extra", "lo", "hi"), KINKED, ids=lambda v: getattr(v, "name", ""))
def test_the_recorded_bound_holds_on_dense_samples(
    op: Op, extra: tuple[Op, ...], lo: float, hi: float
) -> None:
    """|approx - f| <= max_error at 420k points of the fit interval, dense near the kink;
    and the bound is within 2x of the worst error seen (it is not vacuous)."""
    x = np.unique(np.clip(DENSE * max(-lo, hi), lo, hi))
    module, context = _approximated(
        _module(op, lo, hi, extra, x.shape), "relu=composite,error_target=1e-3,margin=0"
    )
    record = _record(module)
    assert (record.lo, record.hi) == (lo, hi) and record.function == op.name
    got = evaluate(module, {"x": x})["y"]
    fixed = [c.value.array for c in extra if isinstance(c, ConstantOp)]
    want = np.asarray(op.evaluate([x, *fixed]), dtype=np.float64)
    worst = float(np.max(np.abs(got - want)))
    assert worst <= record.max_error
    assert record.max_error <= 2.0 * worst
    assert record.max_error <= 1e-3  # the target, reached within 6 stages
    assert any("composite sign of" in note for note in context.notes.values())


def test_auto_uses_the_composite_only_where_one_polynomial_misses() -> None:
    easy, _ = _approximated(
        _module(ew.ReluOp(), -1, 1), "error_target=0.1,output_error=0,relu=auto"
    )
    assert any(isinstance(easy.graph.node(v).op, ChebyshevOp) for v in easy.graph)
    assert _record(easy).degree <= 15  # one Chebyshev series: no product by x at the end
    hard, _ = _approximated(
        _module(ew.ReluOp(), -1, 1), "error_target=1e-3,output_error=0,relu=auto"
    )
    stages = [v for v in hard.graph if isinstance(hard.graph.node(v).op, ChebyshevOp)]
    assert len(stages) >= 2 and _record(hard).max_error <= 1e-3
    default, _ = _approximated(_module(ew.ReluOp(), -1, 1), "error_target=1e-3,output_error=0")
    assert _record(default).max_error > 1e-3  # relu=chebyshev: one polynomial, target missed
    text = print_module(hard)
    assert parse_module(text) == hard


def test_few_stages_allowed_records_what_they_reach() -> None:
    module, context = _approximated(
        _module(ew.ReluOp(), -2, 2), "relu=composite,error_target=1e-6,sign_stages=2"
    )
    record = _record(module)
    assert record.max_error > 1e-6 and record.degree == 7 * 7 + 1
    assert any("missing the target" in note for note in context.notes.values())


def test_the_expansion_computes_the_composite() -> None:
    module, _ = _approximated(_module(ew.ReluOp(), -3, 2), "relu=composite,sign_stages=3")
    expanded = run_pipeline(module, parse_pipeline("expand-polynomials-ckks"), PassContext())
    x = np.random.default_rng(0).uniform(-3, 2, size=(4, 3))
    np.testing.assert_allclose(
        evaluate(expanded, {"x": x})["y"], evaluate(module, {"x": x})["y"], rtol=1e-9, atol=1e-12
    )
    assert _record(expanded).function == "nn.relu"
    assert not any(isinstance(expanded.graph.node(v).op, ChebyshevOp) for v in expanded.graph)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("fit=best", "fit must be one of chebyshev, remez"),
        ("relu=sign", "relu must be one of auto, chebyshev, composite"),
        ("sign_stages=0", "sign_stages must be in 1..8"),
    ],
)
def test_bad_options_are_refused(options: str, message: str) -> None:
    with pytest.raises(FhecError, match=message):
        parse_pipeline(f"approximate-activations{{{options}}}")


def test_relu_through_composite_sign_with_real_seal() -> None:
    """Gemm -> ReLU (composite sign, 3 stages) -> Gemm, encrypted with SEAL (N = 8192,
    security check off for speed): the outputs are within the predicted bound."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="dense1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], name="dense2"),
    ]
    weights = {
        "W1": rng.normal(size=(4, 5)),
        "b1": rng.normal(size=5) * 0.1,
        "W2": rng.normal(size=(5, 2)),
        "b2": rng.normal(size=2),
    }
    model = tiny_model(nodes, weights, features=4, outputs=2)
    features = rng.uniform(-1, 1, size=(64, 4)).astype(np.float32)
    options = {
        "approximate-activations": "relu=composite,output_error=0,error_target=0.01",
        "select-params-ckks": "security=0,poly_degree=8192",
    }
    compiled = compile_ckks(model, {"x": features}, batch_size=64, options=options)
    record = _record(compiled.module)
    assert record.function == "nn.relu" and record.max_error <= 0.01
    circuit = CKKS_BACKEND.build(compiled.module, compiled.signature, {})
    got = circuit.run({"x": features})["y"].astype(np.float64)
    want = reference(model, {"x": features})["y"].astype(np.float64)
    measured = float(np.max(np.abs(got - want)))
    bound = circuit.error_bound["y"]
    assert measured <= bound, f"measured {measured:.3g} over the bound {bound:.3g}"
    simulated = circuit.run({"x": features}, mode="simulate")["y"]
    assert np.max(np.abs(got - simulated)) < 1e-3  # what SEAL computes is the composite
    report = circuit.report()
    print(f"\ncomposite ReLU: error {measured:.3g}, bound {bound:.3g}, depth {report['depth']}")
