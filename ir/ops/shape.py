"""Layout and reduction ops: reshape, transpose, concat, pad, gather, cast, reductions, argmax.

Axes are resolved by the frontend: every axis attribute here is non-negative and in
range, so the text form has one spelling per op. Layout ops move elements without
changing them, so their range is the operand's (a pad adds its fill value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import any_secret, as_dtype
from fhec.ir.types import DType, TensorType

_INTEGER_DTYPES = (DType.I8, DType.I16, DType.I32, DType.I64, DType.U8)


def _check_axis(axis: int, rank: int, what: str = "axis") -> None:
    if not 0 <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")


def _check_axes(axes: tuple[int, ...], rank: int) -> None:
    for axis in axes:
        _check_axis(axis, rank)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes} repeat an axis")


@register_op
@dataclass(frozen=True, slots=True)
class ReshapeOp(Op):
    """The same elements in row-major order, viewed with the fully resolved `shape`."""

    name = "tensor.reshape"
    shape: tuple[int, ...]

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if any(d < 0 for d in self.shape) or math.prod(self.shape) != x.size:
            raise ValueError(f"cannot reshape {x.shape} ({x.size} elements) to {self.shape}")
        return x.with_shape(self.shape)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return np.reshape(operands[0], self.shape)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class TransposeOp(Op):
    """Axes permuted: result axis i is operand axis perm[i]."""

    name = "tensor.transpose"
    perm: tuple[int, ...]

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if sorted(self.perm) != list(range(x.rank)):
            raise ValueError(f"perm {self.perm} is not a permutation of the {x.rank} axes")
        return x.with_shape(tuple(x.shape[p] for p in self.perm))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return np.transpose(operands[0], self.perm)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class ConcatOp(Op):
    """Operands joined along `axis`; every other dimension and the element type agree."""

    name = "tensor.concat"
    arity = (1, None)
    axis: int

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        first = operands[0]
        _check_axis(self.axis, first.rank)
        for other in operands[1:]:
            others_dims = [d for i, d in enumerate(other.shape) if i != self.axis]
            first_dims = [d for i, d in enumerate(first.shape) if i != self.axis]
            if other.rank != first.rank or others_dims != first_dims:
                raise ValueError(
                    f"cannot concat {first.shape} and {other.shape} on axis {self.axis}"
                )
            if other.dtype != first.dtype:
                raise ValueError(f"cannot concat {first.dtype} and {other.dtype}")
        length = sum(t.shape[self.axis] for t in operands)
        shape = (*first.shape[: self.axis], length, *first.shape[self.axis + 1 :])
        return TensorType(shape, first.dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(list(operands), axis=self.axis)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return Interval.hull(operands)


@register_op
@dataclass(frozen=True, slots=True)
class PadOp(Op):
    """Constant padding: `pads` = (begin_0, ..., begin_n-1, end_0, ..., end_n-1) as in ONNX;
    a negative pad crops."""

    name = "tensor.pad"
    pads: tuple[int, ...]
    value: float = 0.0

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if len(self.pads) != 2 * x.rank:
            raise ValueError(f"pads {self.pads} need 2 entries per axis of rank {x.rank}")
        begins, ends = self.pads[: x.rank], self.pads[x.rank :]
        shape = tuple(d + b + e for d, b, e in zip(x.shape, begins, ends, strict=True))
        if any(d < 0 for d in shape):
            raise ValueError(f"pads {self.pads} crop {x.shape} below zero")
        return x.with_shape(shape)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        begins, ends = self.pads[: x.ndim], self.pads[x.ndim :]
        # np.pad cannot crop: apply the negative pads as a slice first.
        crop = tuple(
            slice(max(-b, 0), d - max(-e, 0)) for d, b, e in zip(x.shape, begins, ends, strict=True)
        )
        widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends, strict=True)]
        fill = as_dtype(np.asarray(self.value), x.dtype)
        return np.pad(x[crop], widths, mode="constant", constant_values=fill)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        if all(p <= 0 for p in self.pads):
            return operands[0]
        return Interval.hull([operands[0], Interval(self.value, self.value)])


def _lowest(dtype: np.dtype[np.generic]) -> float | int | bool:
    """The identity of max: the lowest value of `dtype`."""
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else int(np.iinfo(dtype.name).min)


class _Reduction(Op):
    """Reduce over `axes` (empty: no reduction); `keepdims` keeps them with length 1."""

    __slots__ = ()
    axes: tuple[int, ...]
    keepdims: bool

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        _check_axes(self.axes, x.rank)
        shape = tuple(
            1 if i in self.axes else d
            for i, d in enumerate(x.shape)
            if self.keepdims or i not in self.axes
        )
        return x.with_shape(shape)

    def _reduced_count(self, x: TensorType) -> int:
        return math.prod(x.shape[a] for a in self.axes)


@register_op
@dataclass(frozen=True, slots=True)
class ReduceSumOp(_Reduction):
    """Sum over `axes`."""

    name = "tensor.reduce_sum"
    axes: tuple[int, ...]
    keepdims: bool = True

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        return np.asarray(np.sum(x, axis=self.axes, keepdims=self.keepdims, dtype=x.dtype))

    def interval_with_types(
        self,
        operands: Sequence[Interval],
        constants: Sequence[np.ndarray | None],
        types: Sequence[TensorType],
    ) -> Interval | None:
        # n terms, each in [lo, hi]: the sum lies in [n lo, n hi].
        count = self._reduced_count(types[0])
        if count == 0:
            return Interval(0.0, 0.0)  # an empty sum
        return Interval(operands[0].lo * count, operands[0].hi * count)


@register_op
@dataclass(frozen=True, slots=True)
class ReduceMeanOp(_Reduction):
    """Arithmetic mean over `axes`."""

    name = "tensor.reduce_mean"
    axes: tuple[int, ...]
    keepdims: bool = True

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        return as_dtype(np.mean(x, axis=self.axes, keepdims=self.keepdims), x.dtype)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]  # a mean stays within the hull of its terms


@register_op
@dataclass(frozen=True, slots=True)
class ReduceMaxOp(_Reduction):
    """Maximum over `axes`; over no elements, the lowest value of the type (-inf), as ONNX."""

    name = "tensor.reduce_max"
    axes: tuple[int, ...]
    keepdims: bool = True

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        lowest = _lowest(x.dtype)
        return np.asarray(np.max(x, axis=self.axes, keepdims=self.keepdims, initial=lowest))

    def interval_with_types(
        self,
        operands: Sequence[Interval],
        constants: Sequence[np.ndarray | None],
        types: Sequence[TensorType],
    ) -> Interval | None:
        if self._reduced_count(types[0]) == 0:
            return None  # -inf, or the lowest integer: no range worth stating
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class ArgMaxOp(Op):
    """Index (i64) of the maximum along `axis`; ties go to the first index, or the last
    with `select_last_index`."""

    name = "tensor.argmax"
    axis: int
    keepdims: bool = True
    select_last_index: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        _check_axis(self.axis, x.rank)
        shape = tuple(
            1 if i == self.axis else d
            for i, d in enumerate(x.shape)
            if self.keepdims or i != self.axis
        )
        return TensorType(shape, DType.I64, x.secret)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        if not self.select_last_index:
            return np.asarray(np.argmax(x, axis=self.axis, keepdims=self.keepdims), np.int64)
        last = x.shape[self.axis] - 1
        flipped = np.argmax(np.flip(x, axis=self.axis), axis=self.axis, keepdims=self.keepdims)
        return np.asarray(last - flipped, np.int64)

    def interval_with_types(
        self,
        operands: Sequence[Interval],
        constants: Sequence[np.ndarray | None],
        types: Sequence[TensorType],
    ) -> Interval | None:
        return Interval(0.0, float(types[0].shape[self.axis] - 1))


@register_op
@dataclass(frozen=True, slots=True)
class GatherOp(Op):
    """Entries of `data` (operand 0) at integer `indices` (operand 1) along `axis`, as ONNX
    Gather: negative indices count from the end."""

    name = "tensor.gather"
    arity = 2
    axis: int = 0

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        data, indices = operands
        _check_axis(self.axis, data.rank)
        if indices.dtype not in _INTEGER_DTYPES:
            raise ValueError(f"gather indices must be integers, found {indices.dtype}")
        shape = data.shape[: self.axis] + indices.shape + data.shape[self.axis + 1 :]
        return TensorType(shape, data.dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        data, indices = operands
        return np.take(data, indices.astype(np.int64), axis=self.axis)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]  # every result element is an element of data


@register_op
@dataclass(frozen=True, slots=True)
class CastOp(Op):
    """Element type conversion; float to integer truncates toward zero, as ONNX Cast does."""

    name = "tensor.cast"
    to: DType

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        return TensorType(x.shape, self.to, x.secret)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return operands[0].astype(self.to.numpy)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        x = operands[0]
        if self.to == DType.BOOL:
            return Interval(0.0, 1.0)
        if self.to.is_float:
            return x
        limits = np.iinfo(self.to.numpy.name)
        if not x.is_finite() or x.lo < limits.min or x.hi > limits.max:
            return None  # out-of-range conversions wrap: no bound worth stating
        return Interval(float(math.trunc(x.lo)), float(math.trunc(x.hi)))
