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


def product_sum_bound(a: Interval, b: Interval, terms: int) -> Interval:
    """Bounds of a sum of `terms` products a_k * b_k with a_k in `a`, b_k in `b`."""
    return (a * b).scale(float(terms))


def _add_offset(bound: Interval | None, offset: Interval | None) -> Interval | None:
    if bound is None or offset is None:
        return bound
    return bound + offset


# -- Gemm, MatMul -------------------------------------------------------------


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
        if len(operands) == 3 and broadcast_shape([operands[2].shape, (m, n)]) != (m, n):
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
        if b is not None:  # y[i, j] = sum_k a[i, k] * (alpha * b'[k, j]) + offset
            bound = affine_bound(operands[0], self.alpha * (b.T if self.trans_b else b), 0, offset)
        elif a is not None:  # y[i, j] = sum_k (alpha * a'[i, k]) * b[k, j] + offset
            a_mat = self.alpha * (a.T if self.trans_a else a)
            bound = affine_bound(operands[1], a_mat[:, :, None], 1, np.reshape(offset, (-1, 1)) if
                                 np.ndim(offset) == 2 else offset)
        else:
            k = self._matrix_shapes(a_shape := (1, 1), a_shape)[1]  # placeholder, replaced below
            del k
            return None
        if len(operands) == 3 and bias is None:
            bound = _add_offset(bound, operands[2].scale(self.beta))
        return bound
