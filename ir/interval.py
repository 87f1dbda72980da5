"""Value ranges: the `#range` annotation and the interval arithmetic ops use."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fhec.ir.annotation import Annotation, register_annotation


@register_annotation
@dataclass(frozen=True, slots=True)
class Interval(Annotation):
    """Every element of the value lies in [lo, hi] (calibrated or proven)."""

    key = "range"
    lo: float
    hi: float

    @classmethod
    def of(cls, array: np.ndarray) -> Interval:
        values = np.asarray(array, dtype=np.float64)
        if values.size == 0:
            return cls(0.0, 0.0)
        return cls(float(values.min()), float(values.max()))

    @classmethod
    def hull(cls, intervals: Iterable[Interval]) -> Interval:
        items = list(intervals)
        return cls(min(i.lo for i in items), max(i.hi for i in items))

    @property
    def width(self) -> float:
        return self.hi - self.lo

    @property
    def magnitude(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def contains(self, other: Interval) -> bool:
        return self.lo <= other.lo and other.hi <= self.hi

    def is_finite(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def __neg__(self) -> Interval:
        return Interval(-self.hi, -self.lo)

    def __sub__(self, other: Interval) -> Interval:
        return self + (-other)

    def __mul__(self, other: Interval) -> Interval:
        products = _finite_products(self, other)
        return Interval(min(products), max(products))

    def scale(self, factor: float) -> Interval:
        return Interval.hull([Interval(self.lo * factor, self.lo * factor),
                              Interval(self.hi * factor, self.hi * factor)])

    def map_monotonic(self, fn: object, *, increasing: bool = True) -> Interval:
        """Image under a monotonic elementwise numpy function."""
        apply = fn  # a numpy ufunc or any callable on float64 arrays
        ends = np.asarray(apply(np.array([self.lo, self.hi], dtype=np.float64)))  # type: ignore[operator]
        low, high = float(ends[0]), float(ends[1])
        return Interval(low, high) if increasing else Interval(high, low)


def _finite_products(a: Interval, b: Interval) -> list[float]:
    # 0 * inf is taken as 0: a zero bound times an unbounded one stays zero.
    out = []
    for x in (a.lo, a.hi):
        for y in (b.lo, b.hi):
            out.append(0.0 if x == 0.0 or y == 0.0 else x * y)
    return out


@register_annotation
@dataclass(frozen=True, slots=True)
class DotMagnitude(Annotation):
    """A sum of products (Gemm, MatMul, Conv) whose every output element's sum of
    absolute terms, sum_k |a_k b_k|, stayed below `abs_max` on the calibration samples:
    what the float32 roundings of the reference's dot products scale with (Higham's
    bound gamma_K * sum_k |a_k b_k|), far below K * max|a| * max_j sum_k |b_kj| when the
    large inputs meet the small weights."""

    key = "dot"
    abs_max: float
