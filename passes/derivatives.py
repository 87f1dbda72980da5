"""The derivative rules `differentiate` applies: one entry per op class, read as the math.

A rule sees an `Adjoint` (the forward node's operands x, its result y, the gradient
dy of the loss with respect to y) and returns d loss / d x_i for each operand, built
from IR ops; `a.grad(i, f)` builds f() only where operand i needs a gradient and sums
it back to x_i's shape where the forward op broadcast x_i. Every node a rule builds
carries the location of the forward node it differentiates. An op without a rule, or
an operand a rule cannot differentiate, raises `NoDerivative`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

import numpy as np
from numpy.polynomial import chebyshev

from fhec.ir.graph import Graph, ValueId
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops import elementwise as ew
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.grad import (
    AvgPoolGradOp,
    BroadcastOp,
    ConvInputGradOp,
    ConvWeightGradOp,
    MaxPoolGradOp,
    StepOp,
)
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, BatchNormOp, LogSoftmaxOp, MaxPoolOp, SoftmaxOp
from fhec.ir.ops.poly import ChebyshevOp
from fhec.ir.ops.shape import (
    CastOp,
    ConcatOp,
    PadOp,
    ReduceMeanOp,
    ReduceSumOp,
    ReshapeOp,
    TransposeOp,
)
from fhec.ir.types import TensorType


class NoDerivative(Exception):
    """The op (or one of its operands) has no derivative rule; the message says why."""


@dataclass(frozen=True, slots=True)
class Emitter:
    """Builds typed nodes at one location (the forward node being differentiated)."""

    graph: Graph
    location: Location

    def type(self, value: ValueId) -> TensorType:
        return self.graph.node(value).type

    def emit(self, op: Op, *operands: ValueId) -> ValueId:
        result = op.infer([self.type(o) for o in operands])
        return self.graph.add(op, operands, result, self.location)

    def constant(self, value: float | np.ndarray, like: ValueId) -> ValueId:
        """A constant of `like`'s element type."""
        op = ConstantOp.of(np.asarray(value, dtype=self.type(like).dtype.numpy))
        return self.graph.add(op, (), op.infer(()), self.location)

    def add(self, a: ValueId, b: ValueId) -> ValueId:
        return self.emit(ew.AddOp(), a, b)

    def sub(self, a: ValueId, b: ValueId) -> ValueId:
        return self.emit(ew.SubOp(), a, b)

    def mul(self, a: ValueId, b: ValueId) -> ValueId:
        return self.emit(ew.MulOp(), a, b)

    def div(self, a: ValueId, b: ValueId) -> ValueId:
        return self.emit(ew.DivOp(), a, b)

    def neg(self, a: ValueId) -> ValueId:
        return self.emit(ew.NegOp(), a)

    def scale(self, a: ValueId, factor: float) -> ValueId:
        if factor == 1.0:
            return a
        return self.mul(a, self.constant(factor, a))

    def shift(self, a: ValueId, offset: float) -> ValueId:
        return self.add(a, self.constant(offset, a))

    def one_minus(self, a: ValueId) -> ValueId:
        return self.sub(self.constant(1.0, a), a)

    def step(self, a: ValueId) -> ValueId:
        return self.emit(StepOp(), a)

    def reshape(self, a: ValueId, shape: tuple[int, ...]) -> ValueId:
        return a if self.type(a).shape == shape else self.emit(ReshapeOp(shape), a)

    def sum(self, a: ValueId, axes: tuple[int, ...], keepdims: bool) -> ValueId:
        return self.emit(ReduceSumOp(axes, keepdims), a)

    def unbroadcast(self, grad: ValueId, shape: tuple[int, ...]) -> ValueId:
        """Sum `grad` over the axes along which `shape` was broadcast to grad's shape."""
        have = self.type(grad).shape
        if have == shape:
            return grad
        lead = len(have) - len(shape)
        ones = tuple(lead + i for i, d in enumerate(shape) if d == 1 and have[lead + i] != 1)
        if not ones:  # only new leading axes: one sum drops them
            return self.sum(grad, tuple(range(lead)), keepdims=False)
        summed = self.sum(grad, tuple(range(lead)) + ones, keepdims=True)
        return self.reshape(summed, shape)


@dataclass(frozen=True, slots=True)
class Adjoint:
    """What a rule sees: the forward op, its operands x and result y, and dy."""

    e: Emitter
    op: Op
    x: tuple[ValueId, ...]
    y: ValueId
    dy: ValueId
    needs: tuple[bool, ...]

    def shape(self, index: int) -> tuple[int, ...]:
        return self.e.type(self.x[index]).shape

    def grad(self, index: int, build: Callable[[], ValueId]) -> ValueId | None:
        """`build()` summed to operand `index`'s shape, or None where it needs no gradient."""
        if not self.needs[index]:
            return None
        return self.e.unbroadcast(build(), self.shape(index))

    def pointwise(self, derivative: Callable[[], ValueId]) -> tuple[ValueId | None]:
        """y = f(x) elementwise: dx = dy * f'(x)."""
        return (self.grad(0, lambda: self.e.mul(self.dy, derivative())),)


Rule: TypeAlias = Callable[[Adjoint], Sequence[ValueId | None]]


# -- arithmetic -------------------------------------------------------------------


def _div(a: Adjoint) -> Sequence[ValueId | None]:
    if isinstance(a.op, ew.DivOp) and a.op.truncate:
        raise NoDerivative("integer division has no derivative")
    e, (_, b) = a.e, a.x
    # d(x/b)/dx = 1/b; d(x/b)/db = -y/b
    return (a.grad(0, lambda: e.div(a.dy, b)), a.grad(1, lambda: e.neg(e.div(e.mul(a.dy, a.y), b))))


def _pow(a: Adjoint) -> Sequence[ValueId | None]:
    e, p = a.e, a.op.exponent if isinstance(a.op, ew.PowOp) else 1.0
    if p == 1.0:
        return (a.grad(0, lambda: a.dy),)
    # d(x^p)/dx = p x^(p-1)
    return a.pointwise(lambda: e.scale(e.emit(ew.PowOp(p - 1.0), a.x[0]), p))


def _erf_slope(e: Emitter, x: ValueId) -> ValueId:
    """erf'(x) = 2 / sqrt(pi) * exp(-x^2)."""
    return e.scale(e.emit(ew.ExpOp(), e.scale(e.mul(x, x), -1.0)), 2.0 / math.sqrt(math.pi))


# -- activations ------------------------------------------------------------------


def _piecewise(a: Adjoint, negative_slope: Callable[[], ValueId], positive: float) -> ValueId:
    """f' = positive where x > 0, negative_slope() elsewhere."""
    e = a.e
    on = e.step(a.x[0])
    return e.add(e.scale(on, positive), e.mul(e.one_minus(on), negative_slope()))


def _leaky_relu(a: Adjoint) -> Sequence[ValueId | None]:
    alpha = a.op.alpha if isinstance(a.op, ew.LeakyReluOp) else 0.0
    # f' = 1 for x > 0, alpha otherwise = alpha + (1 - alpha) step(x)
    return a.pointwise(lambda: a.e.shift(a.e.scale(a.e.step(a.x[0]), 1.0 - alpha), alpha))


def _prelu(a: Adjoint) -> Sequence[ValueId | None]:
    e, (x, slope) = a.e, a.x
    off = e.one_minus(e.step(x))  # 1 where x <= 0: the slope's side
    return (
        a.grad(0, lambda: e.mul(a.dy, e.add(e.sub(e.constant(1.0, x), off), e.mul(off, slope)))),
        a.grad(1, lambda: e.mul(a.dy, e.mul(x, off))),
    )


def _elu(a: Adjoint) -> Sequence[ValueId | None]:
    alpha = a.op.alpha if isinstance(a.op, ew.EluOp) else 1.0
    # x <= 0: alpha e^x = y + alpha
    return a.pointwise(lambda: _piecewise(a, lambda: a.e.shift(a.y, alpha), 1.0))


def _selu(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, ew.SeluOp)
    # x <= 0: gamma alpha e^x = y + gamma alpha
    return a.pointwise(lambda: _piecewise(a, lambda: a.e.shift(a.y, op.gamma * op.alpha), op.gamma))


def _gelu(a: Adjoint) -> Sequence[ValueId | None]:
    e, x = a.e, a.x[0]
    if isinstance(a.op, ew.GeluOp) and a.op.approximate is ew.GeluApproximation.TANH:
        return a.pointwise(lambda: _gelu_tanh_slope(e, x))
    # d/dx x Phi(x) = Phi(x) + x phi(x), Phi = (1 + erf(x / sqrt 2)) / 2
    cdf = e.scale(e.shift(e.emit(ew.ErfOp(), e.scale(x, math.sqrt(0.5))), 1.0), 0.5)
    pdf = e.scale(e.emit(ew.ExpOp(), e.scale(e.mul(x, x), -0.5)), 1.0 / math.sqrt(2 * math.pi))
    return a.pointwise(lambda: e.add(cdf, e.mul(x, pdf)))


def _gelu_tanh_slope(e: Emitter, x: ValueId) -> ValueId:
    """y = x (1 + t) / 2 with t = tanh(c (x + k x^3)), so
    y' = (1 + t) / 2 + x (1 - t^2) c (1 + 3k x^2) / 2."""
    c, k = math.sqrt(2.0 / math.pi), 0.044715
    x2 = e.mul(x, x)
    t = e.emit(ew.TanhOp(), e.scale(e.mul(x, e.shift(e.scale(x2, k), 1.0)), c))
    inner = e.scale(e.shift(e.scale(x2, 3 * k), 1.0), c)
    outer = e.mul(e.scale(x, 0.5), e.mul(e.one_minus(e.mul(t, t)), inner))
    return e.add(e.scale(e.shift(t, 1.0), 0.5), outer)


def _clip(a: Adjoint) -> Sequence[ValueId | None]:
    op, e, x = a.op, a.e, a.x[0]
    assert isinstance(op, ew.ClipOp)
    masks = []  # 1 strictly inside the bounds, where clip passes x through
    if op.low is not None:
        masks.append(e.step(e.shift(x, -op.low)))
    if op.high is not None:
        masks.append(e.step(e.neg(e.shift(x, -op.high))))
    if not masks:
        return (a.grad(0, lambda: a.dy),)
    return a.pointwise(lambda: masks[0] if len(masks) == 1 else e.mul(masks[0], masks[1]))


def _chebyshev(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, ChebyshevOp)
    if op.degree == 0:
        return (a.grad(0, lambda: a.e.scale(a.dy, 0.0)),)
    # d/dx T(u(x)) = T'(u) du/dx, du/dx = 2 / (hi - lo): again a series on [lo, hi]
    series = chebyshev.chebder(np.array(op.coefficients))  # type: ignore[no-untyped-call]
    slope = np.asarray(series, dtype=np.float64) * (2.0 / (op.hi - op.lo))
    derivative = ChebyshevOp(tuple(float(c) for c in slope), op.lo, op.hi)
    return a.pointwise(lambda: a.e.emit(derivative, a.x[0]))


# -- linear algebra ---------------------------------------------------------------


def _gemm(a: Adjoint) -> Sequence[ValueId | None]:
    """y = alpha A' B' + beta C (A' = A^T if trans_a ...): dA' = dy B'^T, dB' = A'^T dy."""
    g, e, (first, second) = a.op, a.e, a.x[:2]
    assert isinstance(g, GemmOp)
    alpha, dy = g.alpha, a.dy
    # trans_a: dA = (dy B'^T)^T = B' dy^T; trans_b: dB = (A'^T dy)^T = dy^T A'
    first_op, first_args = ((GemmOp(alpha, 1.0, g.trans_b, True), (second, dy)) if g.trans_a
                            else (GemmOp(alpha, 1.0, False, not g.trans_b), (dy, second)))
    second_op, second_args = ((GemmOp(alpha, 1.0, True, g.trans_a), (dy, first)) if g.trans_b
                              else (GemmOp(alpha, 1.0, not g.trans_a, False), (first, dy)))
    grads = [a.grad(0, lambda: e.emit(first_op, *first_args)),
             a.grad(1, lambda: e.emit(second_op, *second_args))]
    if len(a.x) == 3:
        grads.append(a.grad(2, lambda: e.scale(dy, g.beta) if g.beta != 1.0 else dy))
    return grads


def _swap_last(e: Emitter, value: ValueId) -> ValueId:
    rank = e.type(value).rank
    return e.emit(TransposeOp((*range(rank - 2), rank - 1, rank - 2)), value)


def _matmul(a: Adjoint) -> Sequence[ValueId | None]:
    """numpy matmul: 1-D operands promoted to matrices, batch axes broadcast."""
    e, (left, right) = a.e, a.x
    left_shape, right_shape = a.shape(0), a.shape(1)
    left2 = e.reshape(left, (1, *left_shape)) if len(left_shape) == 1 else left
    right2 = e.reshape(right, (*right_shape, 1)) if len(right_shape) == 1 else right
    result = MatMulOp().infer([e.type(left2), e.type(right2)])
    dy = e.reshape(a.dy, result.shape)

    def d_left() -> ValueId:
        full = e.emit(MatMulOp(), dy, _swap_last(e, right2))
        return e.reshape(e.unbroadcast(full, e.type(left2).shape), left_shape)

    def d_right() -> ValueId:
        full = e.emit(MatMulOp(), _swap_last(e, left2), dy)
        return e.reshape(e.unbroadcast(full, e.type(right2).shape), right_shape)

    return (a.grad(0, d_left), a.grad(1, d_right))


def _conv(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, ConvOp)
    x, w = a.x[0], a.x[1]
    steps = (op.strides, op.pads, op.dilations, op.group)
    grads = [
        a.grad(0, lambda: e.emit(ConvInputGradOp(a.shape(0)[2:], *steps), a.dy, w)),
        a.grad(1, lambda: e.emit(ConvWeightGradOp(a.shape(1)[2:], *steps), x, a.dy)),
    ]
    if len(a.x) == 3:
        rank = len(a.shape(0))
        grads.append(a.grad(2, lambda: e.sum(a.dy, (0, *range(2, rank)), keepdims=False)))
    return grads


# -- nn ---------------------------------------------------------------------------


def _avg_pool(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, AvgPoolOp)
    window = (op.kernel, op.strides, op.pads, op.dilations, op.count_include_pad, op.ceil_mode)
    return (a.grad(0, lambda: a.e.emit(AvgPoolGradOp(a.shape(0)[2:], *window), a.dy)),)


def _max_pool(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, MaxPoolOp)
    window = (op.kernel, op.strides, op.pads, op.dilations, op.ceil_mode)
    grad_op = MaxPoolGradOp(a.shape(0)[2:], *window)
    return (a.grad(0, lambda: a.e.emit(grad_op, a.x[0], a.dy)),)


def _batch_norm(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, BatchNormOp)
    if a.needs[3] or a.needs[4]:
        raise NoDerivative("the running mean and variance of a batch norm cannot be trained")
    x, scale, _, mean, var = a.x
    rank = len(a.shape(0))
    channels = (a.shape(0)[1], *([1] * (rank - 2)))
    std = e.emit(ew.SqrtOp(), e.shift(var, op.epsilon))
    inv_std = e.reshape(e.div(e.constant(1.0, var), std), channels)
    other_axes = (0, *range(2, rank))

    def d_scale() -> ValueId:  # sum of dy * (x - mean) / std
        normalized = e.mul(e.sub(x, e.reshape(mean, channels)), inv_std)
        return e.sum(e.mul(a.dy, normalized), other_axes, keepdims=False)

    return (
        a.grad(0, lambda: e.mul(a.dy, e.mul(e.reshape(scale, channels), inv_std))),
        a.grad(1, d_scale),
        a.grad(2, lambda: e.sum(a.dy, other_axes, keepdims=False)),
        None,
        None,
    )


def _softmax(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, SoftmaxOp)
    axis = (op.axis % len(a.shape(0)),)
    # dx = y * (dy - sum(dy * y))
    return (a.grad(0, lambda: e.mul(a.y, e.sub(a.dy, e.sum(e.mul(a.dy, a.y), axis, True)))),)


def _log_softmax(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, LogSoftmaxOp)
    axis = (op.axis % len(a.shape(0)),)
    # dx = dy - softmax(x) * sum(dy), softmax(x) = exp(y)
    return (a.grad(0, lambda: e.sub(a.dy, e.mul(e.emit(ew.ExpOp(), a.y),
                                                 e.sum(a.dy, axis, True)))),)


# -- layout and reductions --------------------------------------------------------


def _transpose(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, TransposeOp)
    inverse = tuple(int(i) for i in np.argsort(op.perm))
    return (a.grad(0, lambda: a.e.emit(TransposeOp(inverse), a.dy)),)


def _reduction(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, ReduceSumOp | ReduceMeanOp)
    shape = a.shape(0)
    if not op.axes:
        return (a.grad(0, lambda: a.dy),)  # no axes: no reduction
    kept = tuple(1 if i in op.axes else d for i, d in enumerate(shape))

    def spread() -> ValueId:
        return e.emit(BroadcastOp(shape), e.reshape(a.dy, kept))

    if isinstance(op, ReduceSumOp):
        return (a.grad(0, spread),)
    count = math.prod(shape[i] for i in op.axes)
    return (a.grad(0, lambda: e.scale(spread(), 1.0 / count)),)


def _concat(a: Adjoint) -> Sequence[ValueId | None]:
    op, e = a.op, a.e
    assert isinstance(op, ConcatOp)
    rank, total = len(a.shape(0)), e.type(a.y).shape[op.axis]
    grads: list[ValueId | None] = []
    offset = 0
    for index in range(len(a.x)):
        size = a.shape(index)[op.axis]
        pads = [0] * (2 * rank)  # negative pads crop dy to this operand's slice
        pads[op.axis], pads[rank + op.axis] = -offset, -(total - offset - size)
        grads.append(a.grad(index, partial(e.emit, PadOp(tuple(pads)), a.dy)))
        offset += size
    return grads


def _pad(a: Adjoint) -> Sequence[ValueId | None]:
    op = a.op
    assert isinstance(op, PadOp)
    # Padding's adjoint crops what it added (and zero-fills what it cropped).
    return (a.grad(0, lambda: a.e.emit(PadOp(tuple(-p for p in op.pads)), a.dy)),)


def _cast(a: Adjoint) -> Sequence[ValueId | None]:
    source = a.e.type(a.x[0]).dtype
    if not (source.is_float and a.e.type(a.y).dtype.is_float):
        target = a.e.type(a.y).dtype
        raise NoDerivative(f"a cast between {source} and {target} is not differentiable")
    return (a.grad(0, lambda: a.e.emit(CastOp(source), a.dy)),)


RULES: dict[type[Op], Rule] = {
    ew.AddOp: lambda a: (a.grad(0, lambda: a.dy), a.grad(1, lambda: a.dy)),
    ew.SubOp: lambda a: (a.grad(0, lambda: a.dy), a.grad(1, lambda: a.e.neg(a.dy))),
    ew.MulOp: lambda a: (
        a.grad(0, lambda: a.e.mul(a.dy, a.x[1])),
        a.grad(1, lambda: a.e.mul(a.dy, a.x[0])),
    ),
    ew.DivOp: _div,
    ew.NegOp: lambda a: (a.grad(0, lambda: a.e.neg(a.dy)),),
    # |x|' = sign(x) = step(x) - step(-x)
    ew.AbsOp: lambda a: a.pointwise(lambda: a.e.sub(a.e.step(a.x[0]), a.e.step(a.e.neg(a.x[0])))),
    ew.PowOp: _pow,
    ew.SqrtOp: lambda a: (a.grad(0, lambda: a.e.div(a.e.scale(a.dy, 0.5), a.y)),),  # 1 / (2y)
    ew.ExpOp: lambda a: a.pointwise(lambda: a.y),  # e^x
    ew.ErfOp: lambda a: a.pointwise(lambda: _erf_slope(a.e, a.x[0])),
    ew.ReluOp: lambda a: a.pointwise(lambda: a.e.step(a.x[0])),
    ew.LeakyReluOp: _leaky_relu,
    ew.PReluOp: _prelu,
    ew.SigmoidOp: lambda a: a.pointwise(lambda: a.e.mul(a.y, a.e.one_minus(a.y))),  # y (1 - y)
    ew.TanhOp: lambda a: a.pointwise(lambda: a.e.one_minus(a.e.mul(a.y, a.y))),  # 1 - y^2
    ew.SoftplusOp: lambda a: a.pointwise(lambda: a.e.emit(ew.SigmoidOp(), a.x[0])),
    ew.EluOp: _elu,
    ew.SeluOp: _selu,
    ew.GeluOp: _gelu,
    ew.ClipOp: _clip,
    ChebyshevOp: _chebyshev,
    GemmOp: _gemm,
    MatMulOp: _matmul,
    ConvOp: _conv,
    AvgPoolOp: _avg_pool,
    MaxPoolOp: _max_pool,
    BatchNormOp: _batch_norm,
    SoftmaxOp: _softmax,
    LogSoftmaxOp: _log_softmax,
    ReshapeOp: lambda a: (a.grad(0, lambda: a.e.reshape(a.dy, a.shape(0))),),
    TransposeOp: _transpose,
    ReduceSumOp: _reduction,
    ReduceMeanOp: _reduction,
    ConcatOp: _concat,
    PadOp: _pad,
    CastOp: _cast,
}


def differentiate_node(adjoint: Adjoint) -> Sequence[ValueId | None]:
    """d loss / d operand for each operand of the node (None where not needed)."""
    rule = RULES.get(type(adjoint.op))
    if rule is None:
        raise NoDerivative(f"{adjoint.op.name} has no derivative rule")
    return list(rule(adjoint))
