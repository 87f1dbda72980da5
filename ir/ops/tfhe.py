"""The TFHE integer dialect: quantization, rounding and table lookups on i64 tensors.

Integer matrix products and convolutions reuse `linalg.matmul` / `linalg.conv` on i64
operands (exact in numpy); the ops here are the ones TFHE adds. Widths in the
circuit are the `#bits` annotation (annotate-bit-widths), not the element type:
every integer value is held as i64 in the IR and by the reference backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.annotation import Annotation, register_annotation
from fhec.ir.attributes import DenseElements
from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.types import DType, TensorType


@register_annotation
@dataclass(frozen=True, slots=True)
class BitWidth(Annotation):
    """The value's width as an encrypted integer. For `tfhe.round` results, the bits
    left after rounding: the precision its table lookup reads."""

    key = "bits"
    width: int
    signed: bool


def integer_range(bits: int, signed: bool) -> tuple[int, int]:
    """[min, max] of a `bits`-bit integer (two's complement when signed)."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@register_op
@dataclass(frozen=True, slots=True)
class QuantizeOp(Op):
    """q = clip(round(x / scale) + zero_point) to a `bits`-bit integer (round half to even),
    one scale and zero point per tensor or per channel along `axis` (from the end)."""

    name = "tfhe.quantize"
    arity = 1
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int
    bits: int
    signed: bool = False

    @property
    def bounds(self) -> tuple[int, int]:
        return integer_range(self.bits, self.signed)

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        _require(x.dtype.is_float, f"tfhe.quantize takes floats, found {x}")
        _require(self.bits >= 1 and all(s > 0 for s in self.scale), "scales must be positive")
        _check_channels(self.scale, self.zero_point, self.axis, x)
        return TensorType(x.shape, DType.I64, x.secret)

    def unclipped(self, x: np.ndarray) -> np.ndarray:
        """x / scale + zero_point, before rounding and clipping (the client checks it)."""
        scale = channel_array(self.scale, self.axis)
        steps = np.asarray(x, dtype=np.float64) / scale + channel_array(self.zero_point, self.axis)
        return np.asarray(steps)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        low, high = self.bounds
        return np.asarray(np.clip(np.rint(self.unclipped(operands[0])), low, high), np.int64)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        ends = self.evaluate([np.array([operands[0].lo, operands[0].hi]).reshape(2, 1)])
        return Interval(float(ends.min()), float(ends.max()))


def channel_array(values: tuple[float, ...] | tuple[int, ...], axis: int) -> np.ndarray:
    """`values` (one, or one per channel) shaped to broadcast along `axis` (from the end)."""
    return np.asarray(values, dtype=np.float64).reshape((-1,) + (1,) * (-axis - 1))


def _check_channels(
    scale: tuple[float, ...], zero_point: tuple[int, ...], axis: int, x: TensorType
) -> None:
    _require(len(scale) == len(zero_point) >= 1, "one zero point per scale")
    _require(axis < 0, f"the channel axis counts from the end, got {axis}")
    if len(scale) > 1:
        _require(-axis <= x.rank, f"axis {axis} is outside {x}")
        _require(x.shape[axis] == len(scale), f"{len(scale)} scales for axis {axis} of {x}")


@register_op
@dataclass(frozen=True, slots=True)
class DequantizeOp(Op):
    """x = (q - zero_point) * scale, one pair per tensor or one per channel along `axis`.

    `axis` counts from the end (-1 is the last axis), so the same op applies to a stack
    of tensors with extra leading axes (lower-to-integer tabulates through it that way).
    """

    name = "tfhe.dequantize"
    arity = 1
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = -1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        q = operands[0]
        _require(not q.dtype.is_float, f"tfhe.dequantize takes integers, found {q}")
        _check_channels(self.scale, self.zero_point, self.axis, q)
        return TensorType(q.shape, DType.F32, q.secret)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        q = np.asarray(operands[0], dtype=np.float64)
        scale, zero = (
            channel_array(self.scale, self.axis),
            channel_array(self.zero_point, self.axis),
        )
        return np.asarray((q - zero) * scale, dtype=np.float32)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        ends = [
            (bound - zero) * scale
            for scale, zero in zip(self.scale, self.zero_point, strict=True)
            for bound in (operands[0].lo, operands[0].hi)
        ]
        return Interval(min(ends), max(ends))


@register_op
@dataclass(frozen=True, slots=True)
class RoundOp(Op):
    """Round to a multiple of 2**lsbs, ties up: concrete's `round_bit_pattern`.

    `approximate` lets concrete round in the table lookup that follows, off by one
    step now and then, at one bootstrap instead of one per removed bit.
    """

    name = "tfhe.round"
    arity = 1
    lsbs: int
    approximate: bool = True

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        _require(not operands[0].dtype.is_float, f"tfhe.round takes integers, found {operands[0]}")
        _require(self.lsbs >= 1, f"tfhe.round removes at least one bit, got lsbs={self.lsbs}")
        return operands[0]

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = np.asarray(operands[0], dtype=np.int64)
        return ((x + (1 << (self.lsbs - 1))) >> self.lsbs) << self.lsbs

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        ends = self.evaluate([np.array([operands[0].lo, operands[0].hi], dtype=np.int64)])
        return Interval(float(ends[0]), float(ends[1]))


@register_op
@dataclass(frozen=True, slots=True)
class LookupOp(Op):
    """A table lookup stored as a step function: y = values[..., k], k = #{t in thresholds: t <= x}.

    `thresholds` has shape S + (R - 1,), ascending along its last axis; `values` has
    shape S + (R,). S broadcasts against x's shape: S = () is one table for every
    element, S = (1, C) one table per channel of an (N, C) tensor. A step function
    keeps a table of any input width as small as its output needs.
    """

    name = "tfhe.lookup"
    arity = 1
    thresholds: DenseElements
    values: DenseElements

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        _require(not x.dtype.is_float, f"tfhe.lookup takes integers, found {x}")
        steps, values = self.thresholds.shape, self.values.shape
        _require(len(values) >= 1 and len(steps) == len(values), "table ranks differ")
        _require(
            steps[:-1] == values[:-1] and steps[-1] + 1 == values[-1],
            f"thresholds {steps} do not fit values {values}",
        )
        table_shape = values[:-1]
        try:
            fits = np.broadcast_shapes(table_shape, x.shape) == x.shape
        except ValueError:
            fits = False
        _require(fits, f"tables of shape {table_shape} do not broadcast to {x}")
        return TensorType(x.shape, DType.I64, x.secret)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = np.asarray(operands[0], dtype=np.int64)
        steps, values = self.thresholds.array, self.values.array
        if values.ndim == 1:
            return values[np.searchsorted(steps, x, side="right")].astype(np.int64)
        steps = np.broadcast_to(steps, x.shape + steps.shape[-1:])
        index = np.sum(x[..., None] >= steps, axis=-1)
        table = np.broadcast_to(values, x.shape + values.shape[-1:])
        return np.take_along_axis(table, index[..., None], axis=-1)[..., 0].astype(np.int64)

    def interval(
        self, operands: Sequence[Interval], constants: Sequence[np.ndarray | None]
    ) -> Interval | None:
        return Interval.of(self.values.array)

    @classmethod
    def tabulate(cls, domain: np.ndarray, outputs: np.ndarray) -> LookupOp:
        """The lookup giving `outputs[i, ...]` at input `domain[i]` (ascending integers),
        holding the first and last outputs beyond the domain's ends. `outputs` has
        shape (len(domain),) + S."""
        outputs = np.asarray(outputs, dtype=np.int64)
        table_shape = outputs.shape[1:]
        flat = outputs.reshape(len(domain), -1).T  # one row per table
        rows = [_steps(domain, row) for row in flat]
        runs = max(len(values) for _, values in rows)
        steps = np.full((len(rows), runs - 1), np.iinfo(np.int64).max, dtype=np.int64)
        values = np.empty((len(rows), runs), dtype=np.int64)
        for index, (row_steps, row_values) in enumerate(rows):
            steps[index, : len(row_steps)] = row_steps
            values[index, : len(row_values)] = row_values
            values[index, len(row_values) :] = row_values[-1]  # padding never reached
        return cls(
            DenseElements.from_array(steps.reshape((*table_shape, runs - 1))),
            DenseElements.from_array(values.reshape((*table_shape, runs))),
        )


def _steps(domain: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs where `outputs` changes, and the output of each run."""
    changes = np.flatnonzero(outputs[1:] != outputs[:-1]) + 1
    return domain[changes].astype(np.int64), outputs[np.concatenate(([0], changes))]
