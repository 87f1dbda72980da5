"""Linear algebra: Gemm, MatMul, convolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import any_secret, broadcast_shape
from fhec.ir.types import TensorType


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
        if len(operands) == 3:
            broadcast_shape([operands[2].shape, (m, n)])
            if broadcast_shape([operands[2].shape, (m, n)]) != (m, n):
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
        # Per-tensor bounds only: |sum_k a_ik b_kj| <= K * max|a| * max|b|.
        _ = operands
        return None
