"""Composite sign polynomials: sign(u) on [-1, 1] as a composition of odd polynomials,
and the piecewise-linear functions with one kink at 0 built from it.

A single polynomial of degree d approximates |x| (and so ReLU) on [-R, R] no better
than about R / d (Bernstein), so ReLU, LeakyReLU, PRelu, Abs and max need a
composition: s = p_k o ... o p_1 with each p_i odd and mapping [-1, 1] into itself, the
first ones steep at 0 (they push small |u| out fast), the last ones flat at +-1 (they
pull values near 1 onto it) -- Cheon, Kim, Kim, Lee, "Efficient homomorphic comparison
methods with optimal complexity", Asiacrypt 2020 (their f_n and g_n). A kinked function
k(x) = x * (even + odd * sign(x)) (ReLU: even = odd = 1/2; Abs: 0, 1; LeakyReLU(a):
(1 + a) / 2, (1 - a) / 2) becomes x * (even + odd * s(x / R)), R = max |x|.

The error bound. For u = |x| / R in [0, 1], |k_approx(x) - k(x)| = R |odd| u |1 - s(u)|
(s is odd, so both signs of x give the same). Sign is wrong near 0: past a threshold
delta, |1 - s| <= eps, and below it |1 - s| <= sigma, so the error is at most
R |odd| max(eps, delta * sigma). `kink_error_factor` takes that bound with the threshold
at every point of a fine grid of [0, 1] (uniform, plus geometric near 0): on each cell
[a, b], u |1 - s(u)| <= b (max(|1 - s(a)|, |1 - s(b)|) + L (b - a) / 2), L = max |s'|,
which holds between the grid points too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from math import comb

import numpy as np
from numpy.polynomial import chebyshev, polynomial

from fhec.ir.op import Op
from fhec.ir.ops.elementwise import LeakyReluOp

Stage = tuple[float, ...]  # an odd polynomial in the power basis, lowest degree first


def cheon_f(n: int) -> Stage:
    """f_n(x) = sum_{i<=n} binom(2i, i) / 4^i * x (1 - x^2)^i: odd, increasing on [-1, 1],
    f_n(+-1) = +-1, flat there to order n (Cheon et al. 2020, section 3)."""
    total = np.zeros(2 * n + 2)
    for i in range(n + 1):
        one_minus_square = polynomial.polypow([1.0, 0.0, -1.0], i)  # type: ignore[no-untyped-call]
        term = polynomial.polymulx(one_minus_square)  # type: ignore[no-untyped-call]
        total[: len(term)] += comb(2 * i, i) / 4.0**i * np.asarray(term)
    return tuple(float(c) for c in total)


# g_3 of Cheon et al. 2020 (coefficients / 2^10): steeper at 0 (about 4.48) than f_3
# (2.19) at the same degree, mapping [0, 1] into [0, 1] without reaching 1 -- the first
# stages use it, f_3 finishes. Only oddness and the map into [-1, 1] matter for the
# bound (it is measured on the composition itself); tests check both.
CHEON_G3: Stage = tuple(
    c / 1024.0 for c in (0.0, 4589.0, 0.0, -16577.0, 0.0, 25614.0, 0.0, -12860.0)
)
CHEON_F3: Stage = cheon_f(3)

# Unit cells for the error bound: uniform on [0, 1], geometric below 0.1 down to 1e-12.
_GRID = np.unique(
    np.concatenate([[0.0], np.geomspace(1e-12, 0.1, 20001), np.linspace(0, 1, 100001)])
)


@dataclass(frozen=True, slots=True)
class Composite:
    """s = stages[-1] o ... o stages[0] on [-1, 1]."""

    stages: tuple[Stage, ...]

    def sign(self, u: np.ndarray) -> np.ndarray:
        s = np.asarray(u, dtype=np.float64)
        for stage in self.stages:
            s = polynomial.polyval(s, stage)  # type: ignore[no-untyped-call]
        return np.asarray(s, dtype=np.float64)

    def slope(self, u: np.ndarray) -> np.ndarray:
        """s'(u), by the chain rule."""
        s = np.asarray(u, dtype=np.float64)
        derivative = np.ones_like(s)
        for stage in self.stages:
            derivative = derivative * polynomial.polyval(s, polynomial.polyder(stage))  # type: ignore[no-untyped-call]
            s = polynomial.polyval(s, stage)  # type: ignore[no-untyped-call]
        return np.asarray(derivative, dtype=np.float64)

    @property
    def degree(self) -> int:
        return int(np.prod([len(stage) - 1 for stage in self.stages]))

    def kink_error_factor(self) -> float:
        """B with max over u in [0, 1] of u |1 - s(u)| <= B (the module docstring)."""
        miss = np.abs(1.0 - self.sign(_GRID))
        # |s'| on each cell: its largest value at the cell's ends and their neighbours
        # (the grid is fine enough that |s'| changes little over three cells).
        steep = np.abs(self.slope(_GRID))
        padded = np.concatenate([steep[:1], steep, steep[-1:]])
        local = np.max(np.stack([padded[:-3], padded[1:-2], padded[2:-1], padded[3:]]), axis=0)
        cells = np.maximum(miss[:-1], miss[1:]) + local * np.diff(_GRID) / 2.0
        return float(np.max(_GRID[1:] * cells))


@cache  # a pure function of two small integers: worth computing once
def _factor(steep: int, flat: int) -> float:
    return Composite((CHEON_G3,) * steep + (CHEON_F3,) * flat).kink_error_factor()


def best_composite(fraction: float, max_stages: int) -> tuple[Composite, float]:
    """The composite of fewest stages (g_3 a times, then f_3 b times) whose B is at most
    `fraction` (the error target over R |odd|), the most accurate of that many; or the
    most accurate within `max_stages` when none is."""
    best: tuple[int, int, float] | None = None
    for total in range(1, max_stages + 1):
        steep, factor = min(
            ((steep, _factor(steep, total - steep)) for steep in range(total + 1)),
            key=lambda pair: pair[1],
        )
        if best is None or factor < best[2]:
            best = (steep, total - steep, factor)
        if factor <= fraction:
            break
    assert best is not None
    steep, flat, factor = best
    return Composite((CHEON_G3,) * steep + (CHEON_F3,) * flat), factor


def kink_parts(op: Op, fixed: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """(even, odd) with op(x) = x * (even + odd * sign(x)) for the kinked functions; None
    for any other."""
    if op.name == "nn.relu":
        return 0.5, 0.5
    if op.name == "arith.abs":
        return 0.0, 1.0
    if isinstance(op, LeakyReluOp):
        return (1.0 + op.alpha) / 2.0, (1.0 - op.alpha) / 2.0
    if op.name == "nn.prelu" and len(fixed) == 1:
        slope = float(fixed[0])
        return (1.0 + slope) / 2.0, (1.0 - slope) / 2.0
    return None


@dataclass(frozen=True, slots=True)
class KinkedFit:
    """x * (even + odd * s(x / R)) for a kinked function on [lo, hi] (R = max |x|)."""

    composite: Composite
    even: float
    odd: float
    lo: float
    hi: float
    factor: float  # B of the composite

    @property
    def radius(self) -> float:
        return max(-self.lo, self.hi)

    @property
    def max_error(self) -> float:
        return self.radius * abs(self.odd) * self.factor

    def slope(self) -> float:
        """max |d/dx| on [-R, R]: |even| + |odd| max |s(u) + u s'(u)| (s odd, s' even)."""
        u = _GRID
        inner = self.composite.sign(u) + u * self.composite.slope(u)
        return abs(self.even) + abs(self.odd) * float(np.max(np.abs(inner)))

    def stage_series(self) -> list[tuple[tuple[float, ...], float, float]]:
        """Each stage as (Chebyshev coefficients, lo, hi): the first on [-R, R] (it reads
        x), the others on [-1, 1]; the last computes even + odd * s."""
        found = []
        radius = self.radius
        for index, stage in enumerate(self.composite.stages):
            series = np.asarray(polynomial_to_chebyshev(stage), dtype=np.float64)
            if index == len(self.composite.stages) - 1:
                series = self.odd * series
                series[0] += self.even
            bounds = (-radius, radius) if index == 0 else (-1.0, 1.0)
            found.append((tuple(float(c) for c in series), *bounds))
        return found


def polynomial_to_chebyshev(stage: Stage) -> np.ndarray:
    return np.asarray(chebyshev.poly2cheb(np.asarray(stage)), dtype=np.float64)  # type: ignore[no-untyped-call]
