"""Shared type rules and bases for op definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.types import DType, TensorType


def any_secret(operands: Sequence[TensorType]) -> bool:
    """A result is secret when any operand is: secrecy flows forward through every op."""
    return any(t.secret for t in operands)


def broadcast_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """Numpy / ONNX multidirectional broadcasting; ValueError when the shapes do not fit."""
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))


def broadcast_type(operands: Sequence[TensorType], dtype: DType | None = None) -> TensorType:
    shape = broadcast_shape([t.shape for t in operands])
    return TensorType(shape, dtype or operands[0].dtype, any_secret(operands))


def as_dtype(array: np.ndarray | np.generic | float, dtype: np.dtype[np.generic]) -> np.ndarray:
    return np.asarray(array).astype(dtype, copy=False)


class UnaryElementwise(Op):
    """y = f(x) elementwise; same shape and type. Subclasses define `apply`.

    `monotonic` is +1 (increasing), -1 (decreasing) or 0 (neither): it gives the
    interval rule for free; others override `interval`.
    """

    __slots__ = ()
    arity = 1
    monotonic: ClassVar[int] = 0

    def apply(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return operands[0]

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        return as_dtype(self.apply(x), x.dtype)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        if self.monotonic == 0:
            return None
        ends = self.apply(np.array([operands[0].lo, operands[0].hi], dtype=np.float64))
        low, high = float(ends[0]), float(ends[1])
        return Interval(low, high) if self.monotonic > 0 else Interval(high, low)


class BinaryElementwise(Op):
    """z = f(x, y) elementwise with broadcasting. Subclasses define `apply`."""

    __slots__ = ()
    arity = 2

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return broadcast_type(operands)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, y = operands
        return as_dtype(self.apply(x, y), x.dtype)
