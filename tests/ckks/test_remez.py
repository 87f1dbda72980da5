"""Remez minimax fits (approximate-activations{fit=remez}): never worse than Chebyshev
interpolation at the same degree, levelled errors, and the recorded error measured."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from fhec.backends.reference import evaluate
from fhec.ir.graph import Function, Graph, Module
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops import elementwise as ew
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.poly import Approximation
from fhec.ir.types import DType, TensorType
from fhec.passes import PassContext, parse_pipeline, run_pipeline
from fhec.passes.remez import remez


def _fitted(
    op: Op, lo: float, hi: float, options: str, size: int = 4
) -> tuple[Module, Approximation]:
    graph = Graph()
    x_type = TensorType((size,), DType.F64, True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"), (Interval(lo, hi),))
    y = graph.add(op, [x], x_type, Location("act", "Act"))
    module = Module(Function("main", graph, [("y", y)]))
    spelled = f"approximate-activations{{margin=0,output_error=0,error_target=1e-12,{options}}}"
    result = run_pipeline(module, parse_pipeline(spelled), PassContext(), verify_each=True)
    (record,) = [a for v in result.graph if (a := result.graph.node(v).annotation(Approximation))]
    return result, record


SMOOTH = [(ew.SigmoidOp(), -8.0, 8.0), (ew.TanhOp(), -3.0, 3.0), (ew.GeluOp(), -4.0, 4.0)]


@pytest.mark.parametrize(("op", "lo", "hi"), SMOOTH, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("degree", [7, 15, 31])
def test_remez_beats_interpolation_at_the_same_degree(
    op: Op, lo: float, hi: float, degree: int
) -> None:
    _, interpolated = _fitted(op, lo, hi, f"max_degree={degree},fit=chebyshev")
    _, minimax = _fitted(op, lo, hi, f"max_degree={degree},fit=remez")
    assert max(interpolated.degree, minimax.degree) <= degree  # zero odd terms dropped
    assert minimax.max_error <= interpolated.max_error
    assert minimax.max_error < 0.9 * interpolated.max_error  # the exchange did its work


def test_the_recorded_error_is_the_measured_one() -> None:
    """The recorded max error is what a denser grid than the fit's finds, to 0.1%."""
    x = np.linspace(-3.0, 3.0, 200001)
    module, record = _fitted(ew.TanhOp(), -3.0, 3.0, "max_degree=15,fit=remez", size=x.size)
    worst = float(np.max(np.abs(evaluate(module, {"x": x})["y"] - np.tanh(x))))
    assert worst == pytest.approx(record.max_error, rel=1e-3)


def test_remez_equioscillates() -> None:
    """The minimax error of exp on [-1, 1] at degree 5 alternates in sign at 7 points of
    equal size (Chebyshev's alternation theorem) -- the mark of the best fit."""
    grid = np.linspace(-1.0, 1.0, 20001)
    coefficients, worst = remez(np.exp, grid, 5)
    error = chebyshev.chebval(grid, coefficients) - np.exp(grid)
    signs = np.sign(error)
    runs = np.split(np.arange(grid.size), np.flatnonzero(np.diff(signs)) + 1)
    peaks = np.array([np.max(np.abs(error[run])) for run in runs])
    assert len(runs) == 7
    assert np.max(peaks) - np.min(peaks) <= 1e-3 * worst
    interpolated = chebyshev.chebinterpolate(np.exp, 5)
    assert worst < np.max(np.abs(chebyshev.chebval(grid, interpolated) - np.exp(grid)))
