"""The polynomial dialect: non-polynomial functions replaced by fitted polynomials.

`approximate-activations` turns each secret activation into `poly.chebyshev`, a
Chebyshev series on the calibrated interval [lo, hi], and records what the fit
costs in `#approx` (the function it stands for, its degree, its largest error on
[lo, hi]). `expand-polynomials-ckks` later writes the series as additions and
multiplications (baby-step giant-step), which any scheme can run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev

from fhec.ir.annotation import Annotation, register_annotation
from fhec.ir.interval import Interval
from fhec.ir.op import register_op
from fhec.ir.ops.common import UnaryElementwise
from fhec.ir.types import TensorType


# Typed doors to numpy's (untyped) Chebyshev-series helpers; a series is its coefficients.
def cheb_eval(u: np.ndarray | float, coefficients: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(chebyshev.chebval(u, np.asarray(coefficients, dtype=np.float64)))  # type: ignore[no-untyped-call]


def cheb_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(chebyshev.chebmul(a, b), dtype=np.float64)  # type: ignore[no-untyped-call]


def cheb_add(a: np.ndarray, b: np.ndarray | Sequence[float]) -> np.ndarray:
    return np.asarray(chebyshev.chebadd(a, b), dtype=np.float64)  # type: ignore[no-untyped-call]


def cheb_sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(chebyshev.chebsub(a, b), dtype=np.float64)  # type: ignore[no-untyped-call]


def to_unit_interval(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The affine map of [lo, hi] onto [-1, 1], where Chebyshev polynomials live."""
    return (2.0 * np.asarray(x, dtype=np.float64) - (lo + hi)) / (hi - lo)


@register_op
@dataclass(frozen=True, slots=True)
class ChebyshevOp(UnaryElementwise):
    """sum_i coefficients[i] * T_i(u), u = (2x - lo - hi) / (hi - lo): a polynomial in x
    written in the Chebyshev basis of [lo, hi] (it is a polynomial everywhere, but fitted
    to a function on [lo, hi] only)."""

    name = "poly.chebyshev"
    coefficients: tuple[float, ...]
    lo: float
    hi: float

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if not operands[0].dtype.is_float:
            raise ValueError(f"poly.chebyshev takes float tensors, found {operands[0].dtype}")
        if not self.coefficients:
            raise ValueError("poly.chebyshev needs at least one coefficient")
        if not self.lo < self.hi:
            raise ValueError(f"poly.chebyshev interval [{self.lo}, {self.hi}] is empty")
        return operands[0]

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        u = to_unit_interval(x, self.lo, self.hi)
        return cheb_eval(u, self.coefficients)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x = operands[0]
        if not x.is_finite():
            return None
        return series_range(self.coefficients, x.lo, x.hi, self.lo, self.hi)


def series_range(
    coefficients: Sequence[float] | np.ndarray, x_lo: float, x_hi: float, lo: float, hi: float
) -> Interval:
    """Bounds of the series on [x_lo, x_hi]: its extremes are at the ends or where its
    derivative vanishes, so the ends plus the real critical points give them exactly."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    points = [x_lo, x_hi]
    if len(coefficients) >= 3:
        slope = chebyshev.chebder(coefficients)  # type: ignore[no-untyped-call]
        for root in chebyshev.chebroots(slope):  # type: ignore[no-untyped-call]
            x = (float(root.real) * (hi - lo) + lo + hi) / 2.0  # back from [-1, 1]
            if abs(root.imag) < 1e-9 and x_lo <= x <= x_hi:
                points.append(x)
    values = cheb_eval(to_unit_interval(np.array(points), lo, hi), coefficients)
    return Interval(float(values.min()), float(values.max()))


@register_annotation
@dataclass(frozen=True, slots=True)
class Approximation(Annotation):
    """The value is a polynomial standing in for `function` on [lo, hi], off by at most
    `max_error` there (measured on a dense grid of the interval). `slope` bounds the
    polynomial's |derivative| there, with respect to the value it is computed from
    (x, or the mapped u = (2x - lo - hi) / (hi - lo) where a Gemm computes u)."""

    key = "approx"
    function: str
    degree: int
    lo: float
    hi: float
    max_error: float
    slope: float
