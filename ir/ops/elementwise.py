"""Elementwise arithmetic, math functions and activations (broadcasting as in ONNX)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.op import register_op
from fhec.ir.ops.common import BinaryElementwise, UnaryElementwise


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
class ReluOp(UnaryElementwise):
    """max(x, 0)."""

    name = "nn.relu"
    monotonic = 1

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)
