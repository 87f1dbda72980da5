"""Linear algebra: Gemm, MatMul, convolution; and the sliding windows pooling shares."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import any_secret, broadcast_shape
from fhec.ir.types import TensorType

# -- interval helpers ---------------------------------------------------------


def affine_bound(
    x: Interval, weights: np.ndarray, axis: int | tuple[int, ...], offset: np.ndarray | float
) -> Interval | None:
    """Hull over all outputs of sum_k w_k x_k + offset, every x_k in `x`.

    Center/radius form (exact per output): c * sum(w) + offset +- r * sum|w|.
    """
    if not x.is_finite():
        return None
    center, radius = (x.lo + x.hi) / 2, (x.hi - x.lo) / 2
    w = np.asarray(weights, dtype=np.float64)
    middle = center * w.sum(axis=axis) + np.asarray(offset, dtype=np.float64)
    spread = radius * np.abs(w).sum(axis=axis)
    return Interval(float(np.min(middle - spread)), float(np.max(middle + spread)))


def _add_offset(bound: Interval | None, offset: Interval | None) -> Interval | None:
    if bound is None or offset is None:
        return bound
    return bound + offset


# -- sliding windows (convolution and pooling) ----------------------------------


def check_window_attributes(
    spatial_rank: int,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
) -> None:
    """ValueError unless each attribute fits `spatial_rank` spatial axes and is positive."""
    for what, values, count in (
        ("kernel", kernel, spatial_rank),
        ("strides", strides, spatial_rank),
        ("dilations", dilations, spatial_rank),
        ("pads", pads, 2 * spatial_rank),
    ):
        if len(values) != count:
            raise ValueError(
                f"{what} has {len(values)} values, {spatial_rank} spatial axes need {count}"
            )
    if min((*kernel, *strides, *dilations), default=1) < 1 or min(pads, default=0) < 0:
        raise ValueError(
            f"kernel, strides and dilations must be positive and pads non-negative, found "
            f"kernel={tuple(kernel)}, strides={tuple(strides)}, dilations={tuple(dilations)}, "
            f"pads={tuple(pads)}"
        )


def window_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Number of window positions per spatial axis (pads in ONNX order: begins, then ends)."""
    rank = len(spatial)
    out = []
    for axis, size in enumerate(spatial):
        span = dilations[axis] * (kernel[axis] - 1) + 1
        room = size + pads[axis] + pads[rank + axis] - span
        if room < 0:
            raise ValueError(f"window of span {span} does not fit axis {axis} of size {size}")
        positions = (-(-room // strides[axis]) if ceil_mode else room // strides[axis]) + 1
        # A window that would start in the right padding is dropped (ONNX pooling-22,
        # onnxruntime): ceil mode may otherwise add one.
        if ceil_mode and (positions - 1) * strides[axis] >= size + pads[axis]:
            positions -= 1
        out.append(positions)
    return tuple(out)


def sliding_windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    out_shape: Sequence[int],
    pad_value: float,
    tail_value: float,
) -> np.ndarray:
    """The windows of x (N, C, *spatial) as an array (N, C, *out_shape, *kernel).

    Taps in the explicit pads read `pad_value`; taps past them (ceil mode) `tail_value`.
    """
    rank = len(kernel)
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
    explicit = [(pads[i], pads[rank + i]) for i in range(rank)]
    padded = np.pad(x, [(0, 0), (0, 0), *explicit], constant_values=pad_value)
    tails = [
        (0, max(0, (out_shape[i] - 1) * strides[i] + spans[i] - padded.shape[2 + i]))
        for i in range(rank)
    ]
    padded = np.pad(padded, [(0, 0), (0, 0), *tails], constant_values=tail_value)
    spatial_axes = tuple(range(2, 2 + rank))
    # numpy's stubs lack the tuple form of `axis` that numpy itself takes
    views = sliding_window_view(padded, spans, axis=spatial_axes)  # type: ignore[call-overload]
    positions = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_shape, strides, strict=True))
    taps = tuple(slice(None, None, d) for d in dilations)
    return np.asarray(views[(slice(None), slice(None), *positions, *taps)])


# -- Gemm, MatMul -------------------------------------------------------------


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether `shape` broadcasts to `target` (unidirectional broadcasting)."""
    try:
        return broadcast_shape([shape, target]) == target
    except ValueError:
        return False


@register_op
@dataclass(frozen=True, slots=True)
class GemmOp(Op):
    """alpha * op(A) @ op(B) + beta * C, op = transpose when trans_*; C optional, broadcast."""

    name = "linalg.gemm"
    arity = (2, 3)
    alpha: float = 1.0
    beta: float = 1.0
    trans_a: bool = False
    trans_b: bool = False

    def _matrix_shapes(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, int, int]:
        if len(a) != 2 or len(b) != 2:
            raise ValueError(f"gemm takes matrices, found shapes {a} and {b}")
        m, k = (a[1], a[0]) if self.trans_a else a
        k2, n = (b[1], b[0]) if self.trans_b else b
        if k != k2:
            raise ValueError(f"gemm inner dimensions differ: {k} and {k2}")
        return m, k, n

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        m, _, n = self._matrix_shapes(operands[0].shape, operands[1].shape)
        if len(operands) == 3 and not _broadcasts_to(operands[2].shape, (m, n)):
            raise ValueError(f"gemm bias of shape {operands[2].shape} does not fit {(m, n)}")
        return TensorType((m, n), operands[0].dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        a, b = operands[0], operands[1]
        a = a.T if self.trans_a else a
        b = b.T if self.trans_b else b
        result = self.alpha * (a @ b)
        if len(operands) == 3:
            result = result + self.beta * operands[2]
        return np.asarray(result).astype(operands[0].dtype, copy=False)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        a, b = constants[0], constants[1]
        bias = constants[2] if len(constants) == 3 else None
        offset = 0.0 if bias is None else self.beta * np.asarray(bias, dtype=np.float64)
        if b is not None:  # y[i, j] = sum_k a'[i, k] * (alpha * b'[k, j]) + offset
            b_mat = self.alpha * (b.T if self.trans_b else b)
            bound = affine_bound(operands[0], b_mat, 0, offset)
        elif a is not None:  # y[i, j] = sum_k (alpha * a'[i, k]) * b'[k, j] + offset
            a_mat = self.alpha * (a.T if self.trans_a else a)
            bound = affine_bound(operands[1], a_mat[:, :, None], 1, offset)
        else:
            return None  # no constant operand: the inner size is unknown here
        if len(operands) == 3 and bias is None:
            bound = _add_offset(bound, operands[2].scale(self.beta))
        return bound


@register_op
@dataclass(frozen=True, slots=True)
class MatMulOp(Op):
    """a @ b with numpy semantics: 1-D operands promoted then squeezed, batch dims broadcast."""

    name = "linalg.matmul"
    arity = 2

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        a, b = operands[0].shape, operands[1].shape
        if not a or not b:
            raise ValueError(f"matmul takes tensors of rank >= 1, found shapes {a} and {b}")
        if operands[0].dtype != operands[1].dtype:
            raise ValueError(
                f"matmul operands differ in type: {operands[0].dtype}, {operands[1].dtype}"
            )
        a2 = (1, *a) if len(a) == 1 else a
        b2 = (*b, 1) if len(b) == 1 else b
        if a2[-1] != b2[-2]:
            raise ValueError(f"matmul inner dimensions differ: {a2[-1]} and {b2[-2]}")
        batch = broadcast_shape([a2[:-2], b2[:-2]])
        rows = (a2[-2],) if len(a) > 1 else ()
        cols = (b2[-1],) if len(b) > 1 else ()
        return TensorType((*batch, *rows, *cols), operands[0].dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        a, b = operands
        return np.asarray(np.matmul(a, b)).astype(a.dtype, copy=False)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        a, b = constants
        if b is not None:  # columns of b (axis -2 sums; a vector is one column)
            return affine_bound(operands[0], b, 0 if b.ndim == 1 else b.ndim - 2, 0.0)
        if a is not None:  # rows of a (axis -1 sums)
            return affine_bound(operands[1], a, a.ndim - 1, 0.0)
        return None  # no constant operand: the inner size is unknown here


@register_op
@dataclass(frozen=True, slots=True)
class ConvOp(Op):
    """ONNX Conv (cross-correlation): x (N, C, *s), w (M, C/group, *k), optional bias b (M,)."""

    name = "linalg.conv"
    arity = (2, 3)
    strides: tuple[int, ...]
    pads: tuple[int, ...]  # ONNX order: all begins, then all ends
    dilations: tuple[int, ...]
    group: int = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x, w = operands[0], operands[1]
        if x.rank < 3 or w.rank != x.rank:
            raise ValueError(
                f"conv takes x (N, C, *s) and w (M, C/group, *k), found {x.shape}, {w.shape}"
            )
        check_window_attributes(x.rank - 2, w.shape[2:], self.strides, self.pads, self.dilations)
        if self.group < 1 or x.shape[1] != w.shape[1] * self.group or w.shape[0] % self.group:
            raise ValueError(
                f"conv group={self.group} does not fit {x.shape[1]} input channels and "
                f"weights {w.shape}"
            )
        if len(operands) == 3 and operands[2].shape != (w.shape[0],):
            raise ValueError(f"conv bias of shape {operands[2].shape}, expected ({w.shape[0]},)")
        if any(t.dtype != x.dtype for t in operands):
            raise ValueError(f"conv operands differ in type: {[str(t.dtype) for t in operands]}")
        out = window_output_shape(x.shape[2:], w.shape[2:], self.strides, self.pads, self.dilations)
        return TensorType((x.shape[0], w.shape[0], *out), x.dtype, any_secret(operands))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, w = operands[0], operands[1]
        rank, group = x.ndim - 2, self.group
        kernel = w.shape[2:]
        out = window_output_shape(x.shape[2:], kernel, self.strides, self.pads, self.dilations)
        windows = sliding_windows(x, kernel, self.strides, self.pads, self.dilations, out, 0, 0)
        windows = windows.reshape(x.shape[0], group, x.shape[1] // group, *out, *kernel)
        weights = w.reshape(group, w.shape[0] // group, *w.shape[1:])
        o, k = string.ascii_uppercase[:rank], string.ascii_uppercase[13 : 13 + rank]
        y = np.einsum(f"ngc{o}{k},gmc{k}->ngm{o}", windows, weights, optimize=True)
        y = y.reshape(x.shape[0], w.shape[0], *out)
        if len(operands) == 3:
            y = y + operands[2].reshape(-1, *([1] * rank))
        return np.asarray(y).astype(x.dtype, copy=False)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        weights = constants[1]
        if weights is None:
            return None  # the number of taps is unknown here
        x = operands[0]
        if any(self.pads):  # taps in the padding read zeros
            x = Interval.hull([x, Interval(0.0, 0.0)])
        bias = constants[2] if len(constants) == 3 else None
        offset = 0.0 if bias is None else bias
        bound = affine_bound(x, weights.reshape(weights.shape[0], -1), 1, offset)
        if len(operands) == 3 and bias is None:
            bound = _add_offset(bound, operands[2])
        return bound
