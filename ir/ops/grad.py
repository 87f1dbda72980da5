"""Gradient ops: the derivatives `differentiate` needs that no forward op expresses.

`grad.step` is the derivative of relu (and the switch of every piecewise activation);
`grad.broadcast` the adjoint of a reduction; `grad.conv_input` / `grad.conv_weight`
the two adjoints of `linalg.conv`; `grad.avg_pool` / `grad.max_pool` those of the
pools. Each window adjoint scatters taps back onto the input (`scatter_windows`, the
transpose of `sliding_windows`), so strides, pads, dilations and ceil mode follow the
forward op exactly.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import UnaryElementwise, any_secret, broadcast_shape
from fhec.ir.ops.linalg import check_window_attributes, sliding_windows, window_output_shape
from fhec.ir.ops.nn import Window
from fhec.ir.types import TensorType


def scatter_windows(
    taps: np.ndarray,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
) -> np.ndarray:
    """The adjoint of `sliding_windows` (zero padding): taps (N, C, *out, *kernel) summed
    back onto (N, C, *spatial); taps that fell in the pads or past them are dropped."""
    rank = len(kernel)
    out = taps.shape[2 : 2 + rank]
    size = [
        max(s + pads[i] + pads[rank + i], (o - 1) * strides[i] + dilations[i] * (k - 1) + 1)
        for i, (s, o, k) in enumerate(zip(spatial, out, kernel, strict=True))
    ]
    acc = np.zeros((*taps.shape[:2], *size), dtype=taps.dtype)
    whole: tuple[slice, ...] = (slice(None), slice(None))
    for tap in itertools.product(*(range(k) for k in kernel)):
        target = tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilations, out, strides, strict=True)
        )
        source: tuple[slice | int, ...] = (*whole, *(slice(None),) * rank, *tap)
        acc[whole + target] += taps[source]
    crop = tuple(slice(pads[i], pads[i] + spatial[i]) for i in range(rank))
    return acc[whole + crop]


def _check_float(name: str, operands: Sequence[TensorType]) -> None:
    if any(not t.dtype.is_float or t.dtype != operands[0].dtype for t in operands):
        raise ValueError(f"{name} takes floats of one type, found {[str(t) for t in operands]}")


def _check_out(name: str, found: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if found != expected:
        raise ValueError(f"{name}: the gradient has window positions {found}, expected {expected}")


@register_op
@dataclass(frozen=True, slots=True)
class StepOp(UnaryElementwise):
    """1 where x > 0, else 0 (Heaviside, H(0) = 0 as PyTorch's relu'(0))."""

    name = "grad.step"
    monotonic = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        _check_float(self.name, operands)
        return operands[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x > 0).astype(x.dtype)


@register_op
@dataclass(frozen=True, slots=True)
class BroadcastOp(Op):
    """x broadcast (numpy rules) to `shape`: the adjoint of a sum over the new axes."""

    name = "grad.broadcast"
    shape: tuple[int, ...]

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        try:
            fits = broadcast_shape([x.shape, self.shape]) == self.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"cannot broadcast {x.shape} to {self.shape}")
        return x.with_shape(self.shape)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return np.array(np.broadcast_to(operands[0], self.shape))

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class ConvInputGradOp(Op):
    """d loss / d x of `linalg.conv` from dy (N, M, *out) and w (M, C/group, *k): a
    transposed convolution onto x's `spatial` shape."""

    name = "grad.conv_input"
    arity = 2
    spatial: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        dy, w = operands
        _check_float(self.name, operands)
        if dy.rank != w.rank or dy.rank != len(self.spatial) + 2 or dy.shape[1] != w.shape[0]:
            raise ValueError(f"{self.name} takes dy (N, M, *out), w (M, C/g, *k): {dy}, {w}")
        kernel = w.shape[2:]
        check_window_attributes(len(kernel), kernel, self.strides, self.pads, self.dilations)
        if self.group < 1 or w.shape[0] % self.group:
            raise ValueError(f"{self.name}: group {self.group} does not divide {w.shape[0]}")
        out = window_output_shape(self.spatial, kernel, self.strides, self.pads, self.dilations)
        _check_out(self.name, dy.shape[2:], out)
        shape = (dy.shape[0], w.shape[1] * self.group, *self.spatial)
        return TensorType(shape, dy.dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        dy, w = operands
        rank, group = dy.ndim - 2, self.group
        kernel, out = w.shape[2:], dy.shape[2:]
        dy_g = dy.reshape(dy.shape[0], group, dy.shape[1] // group, *out)
        w_g = w.reshape(group, w.shape[0] // group, *w.shape[1:])
        o, k = string.ascii_uppercase[:rank], string.ascii_uppercase[13 : 13 + rank]
        taps = np.einsum(f"ngm{o},gmc{k}->ngc{o}{k}", dy_g, w_g, optimize=True)
        taps = taps.reshape(dy.shape[0], group * w.shape[1], *out, *kernel)
        dx = scatter_windows(taps, self.spatial, kernel, self.strides, self.pads, self.dilations)
        return dx.astype(dy.dtype, copy=False)


@register_op
@dataclass(frozen=True, slots=True)
class ConvWeightGradOp(Op):
    """d loss / d w of `linalg.conv` from x (N, C, *s) and dy (N, M, *out): each weight
    tap correlates the input windows with dy, summed over the batch."""

    name = "grad.conv_weight"
    arity = 2
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    group: int = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x, dy = operands
        _check_float(self.name, operands)
        if x.rank != dy.rank or x.rank != len(self.kernel) + 2 or x.shape[0] != dy.shape[0]:
            raise ValueError(f"{self.name} takes x (N, C, *s), dy (N, M, *out): {x}, {dy}")
        check_window_attributes(len(self.kernel), self.kernel, self.strides, self.pads,
                                self.dilations)
        if self.group < 1 or x.shape[1] % self.group or dy.shape[1] % self.group:
            raise ValueError(f"{self.name}: group {self.group} does not divide the channels")
        out = window_output_shape(x.shape[2:], self.kernel, self.strides, self.pads,
                                  self.dilations)
        _check_out(self.name, dy.shape[2:], out)
        shape = (dy.shape[1], x.shape[1] // self.group, *self.kernel)
        return TensorType(shape, x.dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, dy = operands
        rank, group, out = x.ndim - 2, self.group, dy.shape[2:]
        window = (self.kernel, self.strides, self.pads, self.dilations)
        windows = sliding_windows(x, *window, out, 0, 0)
        windows = windows.reshape(x.shape[0], group, x.shape[1] // group, *out, *self.kernel)
        dy_g = dy.reshape(dy.shape[0], group, dy.shape[1] // group, *out)
        o, k = string.ascii_uppercase[:rank], string.ascii_uppercase[13 : 13 + rank]
        dw = np.einsum(f"ngc{o}{k},ngm{o}->gmc{k}", windows, dy_g, optimize=True)
        return np.asarray(dw).reshape(dy.shape[1], x.shape[1] // group, *self.kernel).astype(
            x.dtype, copy=False)


class _PoolGrad(Op):
    """Shared by the pool adjoints: the forward pool's window and the input's `spatial`."""

    __slots__ = ()
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool

    def _window(self) -> Window:
        return self.kernel, self.strides, self.pads, self.dilations

    def _input_type(self, dy: TensorType, secret: bool) -> TensorType:
        check_window_attributes(len(self.spatial), *self._window())
        if dy.rank != len(self.spatial) + 2 or not dy.dtype.is_float:
            raise ValueError(f"{self.name} takes float dy (N, C, *out), found {dy}")
        out = window_output_shape(self.spatial, *self._window(), self.ceil_mode)
        _check_out(self.name, dy.shape[2:], out)
        return TensorType((*dy.shape[:2], *self.spatial), dy.dtype, secret)

    def _scatter(self, taps: np.ndarray) -> np.ndarray:
        return scatter_windows(taps, self.spatial, *self._window())


@register_op
@dataclass(frozen=True, slots=True)
class AvgPoolGradOp(_PoolGrad):
    """d loss / d x of `nn.avg_pool`: each output's gradient shared by its window's taps
    (divided by the same count the forward mean divides by)."""

    name = "grad.avg_pool"
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    count_include_pad: bool = False
    ceil_mode: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return self._input_type(operands[0], operands[0].secret)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        dy = operands[0]
        rank = dy.ndim - 2
        ones = np.ones((1, 1, *self.spatial), dtype=dy.dtype)
        in_pad = 1 if self.count_include_pad else 0
        windows = sliding_windows(ones, *self._window(), dy.shape[2:], in_pad, 0)
        counts = windows.sum(axis=tuple(range(2 + rank, 2 + 2 * rank)))
        share = (dy / counts).reshape(*dy.shape, *([1] * rank))
        taps = np.broadcast_to(share, (*dy.shape, *self.kernel))
        return self._scatter(np.asarray(taps)).astype(dy.dtype, copy=False)


@register_op
@dataclass(frozen=True, slots=True)
class MaxPoolGradOp(_PoolGrad):
    """d loss / d x of `nn.max_pool` from x and dy: each output's gradient goes to the
    first maximal tap of its window (PyTorch's choice on ties)."""

    name = "grad.max_pool"
    arity = 2
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[int, ...]
    dilations: tuple[int, ...]
    ceil_mode: bool = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x, dy = operands
        if x.shape != (*dy.shape[:2], *self.spatial) or x.dtype != dy.dtype:
            raise ValueError(f"{self.name}: x {x} does not fit dy {dy}")
        return self._input_type(dy, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, dy = operands
        windows = sliding_windows(x, *self._window(), dy.shape[2:], -np.inf, -np.inf)
        flat = windows.reshape(*dy.shape, -1)
        winner = flat.argmax(axis=-1)[..., None]
        taps = np.zeros_like(flat)
        np.put_along_axis(taps, winner, dy[..., None], axis=-1)
        return self._scatter(taps.reshape(windows.shape)).astype(dy.dtype, copy=False)
