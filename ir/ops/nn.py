"""Neural-network ops: pooling, normalization, softmax."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import any_secret
from fhec.ir.ops.linalg import check_window_attributes, sliding_windows, window_output_shape
from fhec.ir.types import TensorType

# kernel, strides, pads, dilations
Window = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _pool_type(
    x: TensorType,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[int, ...],
    dilations: tuple[int, ...],
    ceil_mode: bool,
) -> TensorType:
    """x (N, C, *spatial) -> (N, C, *window positions): the type rule of every pool."""
    if x.rank < 3:
        raise ValueError(f"pooling takes (N, C, *spatial) tensors, found shape {x.shape}")
    check_window_attributes(x.rank - 2, kernel, strides, pads, dilations)
    out = window_output_shape(x.shape[2:], kernel, strides, pads, dilations, ceil_mode)
    return x.with_shape((*x.shape[:2], *out))


def _kernel_axes(x: np.ndarray) -> tuple[int, ...]:
    """Axes of the taps in the (N, C, *out, *kernel) array of `sliding_windows`."""
    rank = x.ndim - 2
    return tuple(range(2 + rank, 2 + 2 * rank))


@register_op
@dataclass(frozen=True, slots=True)
class AvgPoolOp(Op):
    """Mean over each window; pads count in the divisor only when `count_include_pad`."""

    name = "nn.avg_pool"
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]  # ONNX order: all begins, then all ends
    dilations: tuple[int, ...]
    count_include_pad: bool = False
    ceil_mode: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if not operands[0].dtype.is_float:
            raise ValueError(f"avg_pool takes floats, found {operands[0].dtype}")
        return _pool_type(operands[0], *self._window(), self.ceil_mode)

    def _window(self) -> Window:
        return self.kernel, self.strides, self.pads, self.dilations

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        out = window_output_shape(x.shape[2:], *self._window(), self.ceil_mode)
        sums = sliding_windows(x, *self._window(), out, 0, 0).sum(axis=_kernel_axes(x))
        # The divisor counts the real taps, plus the explicit pads when count_include_pad;
        # taps past the pads (ceil mode) never count.
        ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
        in_pad = 1 if self.count_include_pad else 0
        counts = sliding_windows(ones, *self._window(), out, in_pad, 0).sum(axis=_kernel_axes(x))
        return np.asarray(sums / counts).astype(x.dtype, copy=False)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        if self.count_include_pad and any(self.pads):  # pad zeros enter the mean
            return Interval.hull([operands[0], Interval(0.0, 0.0)])
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class MaxPoolOp(Op):
    """Maximum over each window; pads never win."""

    name = "nn.max_pool"
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]  # ONNX order: all begins, then all ends
    dilations: tuple[int, ...]
    ceil_mode: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return _pool_type(operands[0], *self._window(), self.ceil_mode)

    def _window(self) -> Window:
        return self.kernel, self.strides, self.pads, self.dilations

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        out = window_output_shape(x.shape[2:], *self._window(), self.ceil_mode)
        lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        windows = sliding_windows(x, *self._window(), out, lowest, lowest)
        return np.asarray(windows.max(axis=_kernel_axes(x))).astype(x.dtype, copy=False)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class BatchNormOp(Op):
    """Inference batch normalization, channel axis 1:
    (x - mean) / sqrt(var + epsilon) * scale + bias, each parameter of shape (C,)."""

    name = "nn.batch_norm"
    arity = 5
    epsilon: float = 1e-5

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if x.rank < 2 or not x.dtype.is_float:
            raise ValueError(f"batch_norm takes float (N, C, ...) tensors, found {x}")
        for what, param in zip(("scale", "bias", "mean", "var"), operands[1:], strict=True):
            if param.shape != (x.shape[1],) or not param.dtype.is_float:
                raise ValueError(f"batch_norm {what} is {param}, expected ({x.shape[1]},) floats")
        return x.with_secret(any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        scale, bias, mean, var = (self._per_channel(p, x) for p in operands[1:])
        y = (x - mean) / np.sqrt(var + x.dtype.type(self.epsilon)) * scale + bias
        return np.asarray(y).astype(x.dtype, copy=False)

    @staticmethod
    def _per_channel(param: np.ndarray, x: np.ndarray) -> np.ndarray:
        return param.astype(x.dtype, copy=False).reshape(-1, *([1] * (x.ndim - 2)))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        if any(c is None for c in constants[1:]) or not operands[0].is_finite():
            return None
        scale, bias, mean, var = (np.asarray(c, dtype=np.float64) for c in constants[1:])
        gain = scale / np.sqrt(var + self.epsilon)  # y = gain * x + shift per channel
        shift = bias - mean * gain
        ends = np.stack([gain * operands[0].lo + shift, gain * operands[0].hi + shift])
        return Interval(float(ends.min()), float(ends.max()))


def _softmax_type(op_name: str, axis: int, x: TensorType) -> TensorType:
    if not -x.rank <= axis < x.rank:
        raise ValueError(f"{op_name} axis {axis} is out of range for shape {x.shape}")
    if not x.dtype.is_float:
        raise ValueError(f"{op_name} takes floats, found {x.dtype}")
    return x


@register_op
@dataclass(frozen=True, slots=True)
class SoftmaxOp(Op):
    """exp(x) / sum(exp(x)) along `axis` (ONNX Softmax-13), shifted by the max for stability."""

    name = "nn.softmax"
    axis: int = -1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return _softmax_type("softmax", self.axis, operands[0])

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        exps = np.exp(x - x.max(axis=self.axis, keepdims=True))
        return np.asarray(exps / exps.sum(axis=self.axis, keepdims=True)).astype(x.dtype)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return Interval(0.0, 1.0)


@register_op
@dataclass(frozen=True, slots=True)
class LogSoftmaxOp(Op):
    """x - log(sum(exp(x))) along `axis` (ONNX LogSoftmax-13), shifted by the max."""

    name = "nn.log_softmax"
    axis: int = -1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return _softmax_type("log_softmax", self.axis, operands[0])

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        shifted = x - x.max(axis=self.axis, keepdims=True)
        log_sum = np.log(np.exp(shifted).sum(axis=self.axis, keepdims=True))
        return np.asarray(shifted - log_sum).astype(x.dtype)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        # Always <= 0; the lower end depends on the axis length, which is not known here.
        return Interval(-math.inf, 0.0)
