"""Function inputs and constants: the ops with no operands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.attributes import DenseElements
from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.types import TensorType


@register_op
@dataclass(frozen=True, slots=True)
class InputOp(Op):
    """A function argument, named as the ONNX graph input it stands for."""

    name = "func.input"
    arity = 0
    input_name: str
    type: TensorType

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return self.type

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        raise ValueError(f"input {self.input_name!r} is bound by the caller, not evaluated")


@register_op
@dataclass(frozen=True, slots=True)
class ConstantOp(Op):
    """A constant tensor (an ONNX initializer or Constant node): never secret."""

    name = "tensor.constant"
    arity = 0
    value: DenseElements

    @classmethod
    def of(cls, array: np.ndarray | float | int) -> ConstantOp:
        return cls(DenseElements.from_array(array))

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        return self.value.type

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return self.value.array

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return Interval.of(self.value.array)
