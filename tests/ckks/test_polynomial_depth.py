"""expand-polynomials-ckks evaluates a degree-d Chebyshev series in ceil(log2(d + 1))
multiplicative levels (plus one for mapping [lo, hi] onto [-1, 1]) and computes the
same polynomial."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fhec.backends.reference import evaluate
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import MulOp
from fhec.ir.parser import parse_module
from fhec.passes import parse_pipeline, run_pipeline

LO, HI = -3.0, 5.0


def _module(coefficients: list[float], lo: float = LO, hi: float = HI) -> Module:
    listed = ", ".join(repr(c) for c in coefficients)
    vector = "tensor<64xf64, secret>"
    return parse_module(
        "module {\n  func @main {\n"
        f'    %0 = func.input() {{input_name = "x", type = {vector}}} : {vector} '
        f'#range{{lo = {lo}, hi = {hi}}} loc("x", "Input")\n'
        f"    %1 = poly.chebyshev(%0) {{coefficients = [{listed}], lo = {lo}, hi = {hi}}} "
        f': {vector} loc("act", "Tanh")\n'
        '    return %1 as "y"\n  }\n}\n'
    )


def _levels(module: Module) -> int:
    """The most products (by constants or values) on any path from the input."""
    graph = module.graph
    depth: dict[ValueId, int] = {}
    for value in graph.topological_order():
        node = graph.node(value)
        if isinstance(node.op, InputOp | ConstantOp):
            depth[value] = 0
            continue
        below = max(depth[o] for o in graph.operands(value))
        depth[value] = below + (1 if isinstance(node.op, MulOp) else 0)
    return max(depth[v] for _, v in module.function.outputs)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5, 7, 8, 11, 15, 16, 27, 31, 63])
def test_series_takes_log2_levels_and_computes_the_polynomial(degree: int) -> None:
    rng = np.random.default_rng(degree)
    coefficients = [float(c) for c in rng.uniform(-1.0, 1.0, degree + 1)]
    module = run_pipeline(_module(coefficients), parse_pipeline("expand-polynomials-ckks"))
    assert _levels(module) == math.ceil(math.log2(degree + 1)) + 1  # + the map onto [-1, 1]
    x = np.linspace(LO, HI, 64)
    u = (2.0 * x - LO - HI) / (HI - LO)
    want = np.polynomial.chebyshev.chebval(u, coefficients)
    got = evaluate(module, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_series_on_minus_one_one_needs_no_map() -> None:
    """A composite sign's later stages read [-1, 1] already: no product maps them."""
    coefficients = [0.0, 1.5, 0.0, -0.5]
    module = _module(coefficients, -1.0, 1.0)
    module = run_pipeline(module, parse_pipeline("expand-polynomials-ckks"))
    assert _levels(module) == 2
    x = np.linspace(-1.0, 1.0, 64)
    got = evaluate(module, {"x": x})["y"]
    np.testing.assert_allclose(got, np.polynomial.chebyshev.chebval(x, coefficients), atol=1e-12)
