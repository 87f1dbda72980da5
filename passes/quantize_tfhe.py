"""quantize-tfhe: post-training quantization of the linear layers, from calibrated ranges.

Applies to: modules whose encrypted inputs reach Gemm / MatMul / Conv with constant
weights. Requires: `annotate-ranges` with calibration data (a `#range` on each secret
operand of those ops). Establishes the QDQ form that lower-to-integer reads: the
secret operand x of each linear op becomes `tfhe.dequantize(tfhe.quantize(x))` with an
n-bit quantizer fitted to x's calibrated range (one pair per value, shared by all its
users), and the weights become `tfhe.dequantize` of an i64 constant (`weight_bits`,
per output channel or per tensor). Biases stay float: lower-to-integer folds them
into table lookups. The module still evaluates in float: the reference backend then
runs the quantized model itself, which is how its accuracy is measured in clear.

Quantizers (`scheme`, `weight_scheme`): asymmetric maps [min(lo, 0), max(hi, 0)] onto
[0, 2^n - 1] with a zero point (0 stays exact, as padding needs); symmetric maps
[-m, m] onto [-(2^(n-1) - 1), 2^(n-1) - 1] with zero point 0, or [0, m] onto
[0, 2^n - 1] when the range is non-negative (a ReLU's output keeps all n bits).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.tfhe import DequantizeOp, QuantizeOp
from fhec.ir.types import TensorType
from fhec.passes.base import Pass, PassContext, PassKind, register_pass

MAX_BITS = 16  # concrete's widest table lookup: no quantized value can be wider


class QuantScheme(StrEnum):
    ASYMMETRIC = "asymmetric"
    SYMMETRIC = "symmetric"


@dataclass(frozen=True, slots=True)
class Quantizer:
    """Float x ~ scale * (q - zero_point), q a `bits`-bit integer."""

    scale: float
    zero_point: int
    bits: int
    signed: bool

    def op(self) -> QuantizeOp:
        return QuantizeOp(self.scale, self.zero_point, self.bits, self.signed)

    def dequantize(self) -> DequantizeOp:
        return DequantizeOp((self.scale,), (self.zero_point,))


def fit_quantizer(lo: float, hi: float, bits: int, scheme: QuantScheme) -> Quantizer:
    """The n-bit quantizer of [lo, hi] (see the module docstring)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if scheme is QuantScheme.ASYMMETRIC:
        scale = _positive((hi - lo) / ((1 << bits) - 1))
        zero_point = int(np.clip(round(-lo / scale), 0, (1 << bits) - 1))
        return Quantizer(scale, zero_point, bits, False)
    if lo >= 0.0:
        return Quantizer(_positive(hi / ((1 << bits) - 1)), 0, bits, False)
    magnitude = max(-lo, hi)
    return Quantizer(_positive(magnitude / ((1 << (bits - 1)) - 1)), 0, bits, True)


def _positive(scale: float) -> float:
    # A constant value (zero width) still needs a usable scale.
    return scale if scale > 0.0 else 1.0


def weight_channel_axis(op: Op, weight_rank: int) -> int | None:
    """The output-channel axis of a linear op's weights, counted from the end; None when
    the op is not one quantize-tfhe handles."""
    if isinstance(op, GemmOp):
        return -2 if op.trans_b else -1
    if isinstance(op, MatMulOp):
        return -1
    if isinstance(op, ConvOp):
        return -weight_rank
    return None


def quantize_weights(
    weights: np.ndarray, axis: int, bits: int, scheme: QuantScheme, per_channel: bool
) -> tuple[np.ndarray, DequantizeOp]:
    """Integer weights and the dequantize op that maps them back (per channel on `axis`)."""
    moved = np.moveaxis(np.asarray(weights, dtype=np.float64), axis, 0)
    rows = moved.reshape(moved.shape[0], -1) if per_channel else moved.reshape(1, -1)
    quantizers = [fit_quantizer(float(r.min()), float(r.max()), bits, scheme) for r in rows]
    scales = np.array([q.scale for q in quantizers]).reshape((-1,) + (1,) * (moved.ndim - 1))
    zeros = np.array([q.zero_point for q in quantizers]).reshape(scales.shape)
    low, high = _bounds(quantizers[0])
    integers = np.clip(np.rint(moved / scales) + zeros, low, high).astype(np.int64)
    dequantize = DequantizeOp(
        tuple(q.scale for q in quantizers),
        tuple(q.zero_point for q in quantizers),
        axis if per_channel else -1,
    )
    return np.moveaxis(integers, 0, axis), dequantize


def _bounds(quantizer: Quantizer) -> tuple[int, int]:
    if quantizer.signed:  # symmetric: the range stays symmetric around 0
        return -((1 << (quantizer.bits - 1)) - 1), (1 << (quantizer.bits - 1)) - 1
    return 0, (1 << quantizer.bits) - 1


@register_pass
@dataclass(frozen=True, slots=True)
class QuantizeTfhe(Pass):
    name = "quantize-tfhe"
    kind = PassKind.TRANSFORM
    bits: int = 6  # inputs and activations
    weight_bits: int = 0  # 0: as `bits`
    scheme: QuantScheme = QuantScheme.ASYMMETRIC
    weight_scheme: QuantScheme = QuantScheme.SYMMETRIC
    per_channel: bool = True

    def __post_init__(self) -> None:
        for option, value in (("bits", self.bits), ("weight_bits", self.weight_bits or 2)):
            if not 2 <= value <= MAX_BITS:
                raise FhecError(
                    f"quantize-tfhe: {option}={value} is out of range",
                    hint=f"choose 2 to {MAX_BITS} bits (concrete's widest table lookup)",
                )

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        quantized: dict[ValueId, ValueId] = {}  # value -> its dequantized copy
        for value in graph.topological_order():
            node = graph.node(value)
            operands = graph.operands(value)
            if len(operands) < 2 or not graph.node(operands[0]).type.secret:
                continue
            weights = graph.node(operands[1]).op
            axis = weight_channel_axis(node.op, graph.node(operands[1]).type.rank)
            if axis is None or not isinstance(weights, ConstantOp):
                continue  # not a linear layer with clear weights: lower-to-integer says why
            source = operands[0]
            if source not in quantized:
                quantized[source] = self._quantize_activation(graph, source, value)
            new_weights = self._quantize_weight(graph, operands[1], weights, axis)
            graph.set_operands(value, (quantized[source], new_weights, *operands[2:]))
            if not graph.users(operands[1]):
                graph.remove(operands[1])

    def _quantize_activation(self, graph: Graph, source: ValueId, user: ValueId) -> ValueId:
        node = graph.node(source)
        interval = node.annotation(Interval)
        if interval is None or not interval.is_finite():
            raise CompileError(
                "the encrypted input of this layer has no calibrated range to quantize it from",
                graph.node(user).location,
                hint="the tfhe backend needs calibration data: pass calibration=... "
                "(fhec compile --calibration DATA.npz)",
            )
        quantizer = fit_quantizer(interval.lo, interval.hi, self.bits, self.scheme)
        at = graph.node(user).location
        quantize = graph.add(quantizer.op(), [source], _infer(quantizer.op(), graph, source), at)
        dequantize = quantizer.dequantize()
        return graph.add(dequantize, [quantize], _infer(dequantize, graph, quantize), at)

    def _quantize_weight(
        self, graph: Graph, value: ValueId, weights: ConstantOp, axis: int
    ) -> ValueId:
        bits = self.weight_bits or self.bits
        integers, dequantize = quantize_weights(
            weights.value.array, axis, bits, self.weight_scheme, self.per_channel
        )
        at = graph.node(value).location
        constant = ConstantOp.of(integers)
        stored = graph.add(constant, [], constant.value.type, at)
        return graph.add(dequantize, [stored], _infer(dequantize, graph, stored), at)


def _infer(op: Op, graph: Graph, operand: ValueId) -> TensorType:
    return op.infer([graph.node(operand).type])
