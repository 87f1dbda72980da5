"""Elementwise arithmetic, math functions and activations (broadcasting as in ONNX).

Interval rules bound the mathematical function; the float32 evaluation may differ
from it by rounding (an ulp or so), which the range analysis absorbs in its margins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import register_op
from fhec.ir.ops.common import BinaryElementwise, UnaryElementwise, broadcast_type
from fhec.ir.types import TensorType

Bounds = Callable[[Interval], Interval | None]


def _image(fn: Callable[[np.ndarray], np.ndarray], x: Interval) -> Interval | None:
    """Image of `x` under `fn`, monotonic on `x` (either direction); None if undefined."""
    with np.errstate(over="ignore", invalid="ignore"):
        ends = np.asarray(fn(np.array([x.lo, x.hi], dtype=np.float64)), dtype=np.float64)
    if np.isnan(ends).any():
        return None
    return Interval(float(ends.min()), float(ends.max()))


def _split_at_zero(x: Interval, negative: Bounds, positive: Bounds) -> Interval | None:
    """Bounds of a function continuous at 0 and given piecewise on x <= 0 and x >= 0."""
    pieces = []
    if x.lo <= 0.0:
        pieces.append(negative(Interval(x.lo, min(x.hi, 0.0))))
    if x.hi >= 0.0:
        pieces.append(positive(Interval(max(x.lo, 0.0), x.hi)))
    if any(piece is None for piece in pieces):
        return None
    return Interval.hull(p for p in pieces if p is not None)


def _require_float(name: str, operand: TensorType) -> None:
    if not operand.dtype.is_float:
        raise ValueError(f"{name} takes floating-point tensors, found {operand.dtype}")


class FloatUnary(UnaryElementwise):
    """A unary math function defined on floating-point tensors only."""

    __slots__ = ()

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        _require_float(self.name, operands[0])
        return operands[0]


# -- arithmetic -----------------------------------------------------------------


@register_op
@dataclass(frozen=True, slots=True)
class AddOp(BinaryElementwise):
    """x + y."""

    name = "arith.add"

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.add(x, y)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0] + operands[1]


@register_op
@dataclass(frozen=True, slots=True)
class SubOp(BinaryElementwise):
    """x - y."""

    name = "arith.sub"

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.subtract(x, y)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0] - operands[1]


@register_op
@dataclass(frozen=True, slots=True)
class MulOp(BinaryElementwise):
    """x * y."""

    name = "arith.mul"

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.multiply(x, y)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0] * operands[1]


@register_op
@dataclass(frozen=True, slots=True)
class DivOp(BinaryElementwise):
    """x / y; `truncate` (integer tensors, as in ONNX and C) rounds the quotient toward 0."""

    name = "arith.div"
    truncate: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        is_integer = not operands[0].dtype.is_float
        if self.truncate != is_integer:
            raise ValueError(
                f"arith.div on {operands[0].dtype} needs truncate={str(is_integer).lower()}"
            )
        return broadcast_type(operands)

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if not self.truncate:
            return np.divide(x, y)
        with np.errstate(divide="ignore"):  # integer x / 0 is undefined in ONNX
            floored = np.floor_divide(x, y)
            inexact = np.remainder(x, y) != 0
        # numpy floors; truncation differs where the quotient is negative and inexact.
        return np.asarray(floored + (inexact & ((x < 0) != (y < 0))))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x, y = operands
        if y.lo <= 0.0 <= y.hi:
            return None  # the divisor may be 0: no finite bound
        with np.errstate(invalid="ignore"):
            quotients = np.array([a / b for a in (x.lo, x.hi) for b in (y.lo, y.hi)])
        if np.isnan(quotients).any():
            return None
        # trunc is monotonic, so it maps the extreme quotients to the extreme results.
        ends = np.trunc(quotients) if self.truncate else quotients
        return Interval(float(ends.min()), float(ends.max()))


@register_op
@dataclass(frozen=True, slots=True)
class NegOp(UnaryElementwise):
    """-x."""

    name = "arith.neg"
    monotonic = -1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.negative(x))


@register_op
@dataclass(frozen=True, slots=True)
class AbsOp(UnaryElementwise):
    """|x|."""

    name = "arith.abs"

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.abs(x))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x = operands[0]
        if x.lo >= 0.0:
            return x
        if x.hi <= 0.0:
            return -x
        return Interval(0.0, max(-x.lo, x.hi))


@register_op
@dataclass(frozen=True, slots=True)
class PowOp(UnaryElementwise):
    """x ** exponent; integer tensors take a non-negative integral exponent only."""

    name = "arith.pow"
    exponent: float

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if not operands[0].dtype.is_float and not (
            self.exponent >= 0 and float(self.exponent).is_integer()
        ):
            raise ValueError(
                f"arith.pow on {operands[0].dtype} takes a non-negative integral exponent, "
                f"found {self.exponent}"
            )
        return operands[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        if np.issubdtype(x.dtype, np.integer):
            return np.power(x, int(self.exponent))  # exact, wrapping like ONNX runtimes
        return np.power(x, x.dtype.type(self.exponent))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x, exponent = operands[0], self.exponent
        if exponent < 0 and x.lo <= 0.0 <= x.hi:
            return None  # a pole at 0
        if not float(exponent).is_integer() and x.lo < 0.0:
            return None  # NaN for negative bases
        with np.errstate(over="ignore"):
            values = [float(v) for v in np.power(np.array([x.lo, x.hi]), exponent)]
        if x.lo < 0.0 < x.hi:
            values.append(0.0**exponent)  # even powers dip to 0 inside
        return Interval(min(values), max(values))


@register_op
@dataclass(frozen=True, slots=True)
class SqrtOp(FloatUnary):
    """sqrt(x); NaN for x < 0."""

    name = "arith.sqrt"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.sqrt(x))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return None if operands[0].lo < 0.0 else _image(self.apply, operands[0])


@register_op
@dataclass(frozen=True, slots=True)
class ExpOp(FloatUnary):
    """e ** x."""

    name = "arith.exp"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(x))


@register_op
@dataclass(frozen=True, slots=True)
class LogOp(FloatUnary):
    """The natural logarithm; -inf at 0, NaN below."""

    name = "arith.log"

    def apply(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log(x))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return None if operands[0].lo <= 0.0 else _image(self.apply, operands[0])


@register_op
@dataclass(frozen=True, slots=True)
class ErfOp(FloatUnary):
    """The Gauss error function."""

    name = "arith.erf"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import erf  # scipy comes with concrete-python; loaded on use

        return np.asarray(erf(x))


# -- activations ------------------------------------------------------------------


@register_op
@dataclass(frozen=True, slots=True)
class ReluOp(UnaryElementwise):
    """max(x, 0)."""

    name = "nn.relu"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


@register_op
@dataclass(frozen=True, slots=True)
class LeakyReluOp(FloatUnary):
    """x if x >= 0 else alpha * x."""

    name = "nn.leaky_relu"
    alpha: float = 0.01

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, self.alpha * x, x)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        slope = Interval(self.alpha, self.alpha)
        return _split_at_zero(operands[0], lambda neg: neg * slope, lambda pos: pos)


@register_op
@dataclass(frozen=True, slots=True)
class PReluOp(BinaryElementwise):
    """x if x >= 0 else slope * x; the slope (operand 1) broadcasts to x's shape."""

    name = "nn.prelu"

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        result = broadcast_type(operands)
        if result.shape != operands[0].shape:
            raise ValueError(
                f"prelu slope of shape {operands[1].shape} does not broadcast to "
                f"the input's shape {operands[0].shape}"
            )
        return result

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(x < 0, x * y, x)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        slope = operands[1]
        return _split_at_zero(operands[0], lambda neg: neg * slope, lambda pos: pos)


@register_op
@dataclass(frozen=True, slots=True)
class SigmoidOp(FloatUnary):
    """1 / (1 + e ** -x)."""

    name = "nn.sigmoid"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(-np.logaddexp(0, -x)))  # no overflow for very negative x


@register_op
@dataclass(frozen=True, slots=True)
class TanhOp(FloatUnary):
    """tanh(x)."""

    name = "nn.tanh"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.tanh(x))


@register_op
@dataclass(frozen=True, slots=True)
class SoftplusOp(FloatUnary):
    """log(1 + e ** x)."""

    name = "nn.softplus"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.logaddexp(x, 0)  # no overflow for large x


@register_op
@dataclass(frozen=True, slots=True)
class EluOp(FloatUnary):
    """x if x >= 0 else alpha * (e ** x - 1)."""

    name = "nn.elu"
    alpha: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, self.alpha * np.expm1(np.minimum(x, 0)), x)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return _split_at_zero(operands[0], lambda neg: _image(self.apply, neg), lambda pos: pos)


@register_op
@dataclass(frozen=True, slots=True)
class SeluOp(FloatUnary):
    """gamma * x if x > 0 else gamma * alpha * (e ** x - 1)."""

    name = "nn.selu"
    alpha: float = 1.67326319217681884765625
    gamma: float = 1.05070102214813232421875

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.gamma * np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        gamma = Interval(self.gamma, self.gamma)
        return _split_at_zero(
            operands[0], lambda neg: _image(self.apply, neg), lambda pos: pos * gamma
        )


class GeluApproximation(StrEnum):
    NONE = "none"
    TANH = "tanh"


# GELU falls from 0 to one minimum near x = -0.752 and rises after it. Minimum values
# (-0.169971 exact, -0.170041 tanh form) are rounded down, the argmin bracketed.
_GELU_ARGMIN_BRACKET = (-0.76, -0.74)
_GELU_MINIMUM = {GeluApproximation.NONE: -0.16998, GeluApproximation.TANH: -0.17005}


@register_op
@dataclass(frozen=True, slots=True)
class GeluOp(FloatUnary):
    """x * Phi(x) (Phi the standard normal CDF), or its tanh approximation."""

    name = "nn.gelu"
    approximate: GeluApproximation = GeluApproximation.NONE

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.approximate is GeluApproximation.TANH:
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
            return np.asarray(0.5 * x * (1 + np.tanh(inner)))
        from scipy.special import erfc  # erfc keeps precision in the negative tail

        return np.asarray(0.5 * x * erfc(-x / math.sqrt(2.0)))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x = operands[0]
        left, right = _GELU_ARGMIN_BRACKET
        if not x.is_finite():
            return None
        if x.hi <= left or x.lo >= right:
            return _image(self.apply, x)  # monotonic on either side of the minimum
        ends = self.apply(np.array([x.lo, x.hi], dtype=np.float64))
        return Interval(_GELU_MINIMUM[self.approximate], float(ends.max()))


@register_op
@dataclass(frozen=True, slots=True)
class ClipOp(UnaryElementwise):
    """min(max(x, low), high); an absent bound does not clip. low > high gives high."""

    name = "nn.clip"
    low: float | None = None
    high: float | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.low is not None:
            x = np.maximum(x, np.asarray(self.low).astype(x.dtype))
        if self.high is not None:
            x = np.minimum(x, np.asarray(self.high).astype(x.dtype))
        return x

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return _image(self.apply, operands[0])  # non-decreasing
