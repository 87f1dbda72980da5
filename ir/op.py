"""The op base and its registry.

An op is a frozen dataclass whose fields are its attributes. `infer` is its only
type rule, `evaluate` its only plaintext meaning (reference backend, constant
folding, calibration), and `interval` its interval-arithmetic rule (range
analysis where no calibration data reaches). Everything else derives from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import ClassVar, TypeVar

import numpy as np

from fhec.ir.interval import Interval
from fhec.ir.types import TensorType


class Op:
    """Base class of all ops. Subclasses are `@register_op` frozen slotted dataclasses."""

    __slots__ = ()

    name: ClassVar[str]
    # Exact operand count, or (minimum, maximum) with None for no maximum.
    arity: ClassVar[int | tuple[int, int | None]] = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        raise NotImplementedError(f"{self.name} has no type rule")

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError(f"{self.name} has no plaintext semantics")

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        """Bounds of the result given bounds of the operands; None when unknown.

        `constants[i]` is operand i's value when it is a constant (weights), so linear
        ops can bound their result far tighter than from its interval alone.
        """
        return None

    def interval_with_types(
        self,
        operands: Sequence[Interval],
        constants: Sequence[np.ndarray | None],
        types: Sequence[TensorType],
    ) -> Interval | None:
        """`interval` with the operand types at hand: the entry point range analysis calls.

        Ops whose bounds depend on shapes (a sum over an axis grows with its length)
        override this one; the others define `interval` and inherit this forwarder.
        """
        return self.interval(operands, constants)

    def attributes(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def accepts_operand_count(self, count: int) -> bool:
        if isinstance(self.arity, int):
            return count == self.arity
        low, high = self.arity
        return count >= low and (high is None or count <= high)


OP_REGISTRY: dict[str, type[Op]] = {}

OpT = TypeVar("OpT", bound=type[Op])


def register_op(cls: OpT) -> OpT:
    if cls.name in OP_REGISTRY and OP_REGISTRY[cls.name] is not cls:
        raise ValueError(f"op {cls.name} registered twice")
    OP_REGISTRY[cls.name] = cls
    return cls


