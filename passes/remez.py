"""Remez exchange: the minimax polynomial of a degree on [-1, 1], in the Chebyshev basis.

The best approximation p* of degree n to a continuous f is the one whose error
equioscillates at n + 2 points (Chebyshev's alternation theorem). Remez's second
algorithm finds it: on a reference of n + 2 points x_0 < ... < x_(n+1) solve
sum_i c_i T_i(x_j) + (-1)^j E = f(x_j) for c and the levelled error E, then move the
reference to the alternating extrema of the error p - f on a dense grid, and repeat
until the extrema are level (Trefethen, "Approximation Theory and Approximation
Practice", chapter 10; Pachón & Trefethen 2009). The Chebyshev basis keeps the system
well conditioned up to the degrees used here (<= 255). The start is the Chebyshev
points of the second kind, where the interpolant's error nearly equioscillates already.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.polynomial import chebyshev

ITERATIONS = 40
LEVELLED = 1e-4  # stop when the extrema differ by this fraction of the largest


def remez(
    fn: Callable[[np.ndarray], np.ndarray], grid: np.ndarray, degree: int
) -> tuple[np.ndarray, float]:
    """Minimax coefficients of `degree` for `fn` on the sorted `grid` of [-1, 1], and the
    largest |error| on that grid (the best iterate's, should the exchange stall)."""
    exact = fn(grid)
    reference = np.searchsorted(grid, -np.cos(np.pi * np.arange(degree + 2) / (degree + 1)))
    reference = np.clip(reference, 0, len(grid) - 1)
    best: tuple[np.ndarray, float] | None = None
    for _ in range(ITERATIONS):
        coefficients = _levelled(grid[reference], exact[reference], degree)
        if coefficients is None:
            break
        error = chebyshev.chebval(grid, coefficients) - exact  # type: ignore[no-untyped-call]
        worst = float(np.max(np.abs(error)))
        if best is None or worst < best[1]:
            best = (coefficients, worst)
        found = _alternating_extrema(error, degree + 2)
        if found is None:
            break
        reference = found
        level = np.abs(error[reference])
        if worst - float(level.min()) <= LEVELLED * worst:
            break
    if best is None:  # the very first system was singular: plain interpolation
        coefficients = chebyshev.chebinterpolate(fn, degree)  # type: ignore[no-untyped-call]
        error = chebyshev.chebval(grid, coefficients) - exact  # type: ignore[no-untyped-call]
        best = (np.asarray(coefficients), float(np.max(np.abs(error))))
    return best


def _levelled(points: np.ndarray, values: np.ndarray, degree: int) -> np.ndarray | None:
    """c with sum_i c_i T_i(x_j) + (-1)^j E = f(x_j) on the n + 2 reference points."""
    basis = chebyshev.chebvander(points, degree)  # type: ignore[no-untyped-call]
    signs = (-1.0) ** np.arange(len(points))
    system = np.column_stack([basis, signs])
    try:
        solution = np.linalg.solve(system, values)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(solution)):
        return None
    return np.asarray(solution[:-1], dtype=np.float64)


def _alternating_extrema(error: np.ndarray, count: int) -> np.ndarray | None:
    """Indices of `count` extrema of `error` with alternating signs, the largest kept:
    one extremum per run of constant sign, then the smallest dropped (an inner one with
    its smaller neighbour, which keeps the signs alternating) until `count` are left."""
    signs = np.sign(error)
    signs[signs == 0] = 1.0
    starts = np.flatnonzero(np.diff(signs)) + 1
    runs = np.split(np.arange(len(error)), starts)
    peaks = [int(run[np.argmax(np.abs(error[run]))]) for run in runs]
    if len(peaks) < count:
        return None
    while len(peaks) > count:
        sizes = np.abs(error[peaks])
        smallest = int(np.argmin(sizes))
        if smallest in (0, len(peaks) - 1):
            peaks.pop(smallest)
        elif len(peaks) - count >= 2:  # an inner one goes with its smaller neighbour
            neighbour = smallest - 1 if sizes[smallest - 1] < sizes[smallest + 1] else smallest + 1
            for index in sorted((smallest, neighbour), reverse=True):
                peaks.pop(index)
        else:  # one too many: the smaller end goes (the alternation stays)
            peaks.pop(0 if sizes[0] <= sizes[-1] else -1)
    return np.asarray(peaks)
