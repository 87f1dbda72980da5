"""quantize-tfhe: post-training quantization of the linear layers, from calibration data.

Applies to: modules whose encrypted inputs reach Gemm / MatMul / Conv layers with
constant weights, possibly through Reshape (Flatten) and AveragePool. Requires:
calibration samples in the pass context, and `annotate-ranges` (its `#range` sets
per-tensor quantizers). Establishes the QDQ form lower-to-integer reads. The secret
input x of each layer (or the value before the reshapes and average pools that lead
to it) becomes `tfhe.dequantize(tfhe.quantize(x))` (one pair per value, shared by its
users) with n-bit quantizers fitted to x's calibrated range, per tensor or per
channel (the layer's input features). Each activation scale s_k then moves into the
layer's weights, W'[k, :] = s_k W[k, :], so the dequantize gives q - z in
quantization steps and the weights W' are quantized (`weight_bits`, per output
channel or per tensor) to `tfhe.dequantize` of an i64 constant: one integer product
serves whatever per-channel scales x has. Biases stay float (lower-to-integer folds
them into table lookups). The module still evaluates in float, as the quantized
model: its clear accuracy is the reference backend's.

Quantizers (`scheme`, `weight_scheme`): asymmetric maps [min(lo, 0), max(hi, 0)] onto
[0, 2^n - 1] with a zero point (0 stays exact, as padding needs); symmetric maps
[-m, m] onto [-(2^(n-1) - 1), 2^(n-1) - 1] with zero point 0, or [0, m] onto
[0, 2^n - 1] when the range is non-negative (a ReLU's output keeps all n bits).

Weight scales (`weight_fit`): `range` fits each output channel's weights to their own
range, as above; `accumulator` (the default) fits the symmetric per-channel weights of
a Gemm / MatMul whose output another layer reads through a lookup to that layer's
calibrated accumulators instead: every channel then spans the lookup's levels, the
narrow ones with finer weights (passes/tfhe_weights.py). What it sees: the
calibration samples only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, MaxPoolOp
from fhec.ir.ops.shape import ReshapeOp
from fhec.ir.ops.tfhe import DequantizeOp, QuantizeOp
from fhec.ir.types import TensorType
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass
from fhec.passes.tfhe_weights import accumulator_scales

MAX_BITS = 16  # concrete's widest table lookup: no quantized value can be wider


class QuantScheme(StrEnum):
    ASYMMETRIC = "asymmetric"
    SYMMETRIC = "symmetric"


class WeightFit(StrEnum):
    RANGE = "range"  # each output channel's weights on their own range
    ACCUMULATOR = "accumulator"  # on their accumulators (passes/tfhe_weights.py)


@dataclass(frozen=True, slots=True)
class Quantizer:
    """Float x ~ scale * (q - zero_point), q a `bits`-bit integer."""

    scale: float
    zero_point: int
    bits: int
    signed: bool

    @property
    def bounds(self) -> tuple[int, int]:
        if self.signed:  # symmetric: the range stays symmetric around 0
            return -((1 << (self.bits - 1)) - 1), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1


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


@dataclass(frozen=True, slots=True)
class LayerAxes:
    """Where a layer's input features lie: in x (activation) and in its weights, both
    counted from the end; and the weights' output-channel axis."""

    activation: int
    weight_input: int
    weight_output: int


def layer_axes(op: Op, weight_rank: int) -> LayerAxes | None:
    """None for ops quantize-tfhe does not handle as a layer."""
    if isinstance(op, GemmOp):
        return LayerAxes(
            -2 if op.trans_a else -1, -1 if op.trans_b else -2, -2 if op.trans_b else -1
        )
    if isinstance(op, MatMulOp) and weight_rank == 2:
        return LayerAxes(-1, -2, -1)
    if isinstance(op, ConvOp):  # x (N, C, *s), w (M, C / group, *k)
        return LayerAxes(1 - weight_rank, 1 - weight_rank, -weight_rank)
    return None


# Ops without weights that a quantized value can go through on its way to a layer
# (lower-to-integer computes them on the integers): the quantizer sits before. A max
# commutes with the (monotone) quantizer, so MaxPool may read quantized values too.
PASS_THROUGH = (ReshapeOp, AvgPoolOp, MaxPoolOp)


def quantization_source(graph: Graph, layer: ValueId) -> tuple[ValueId, list[ValueId]]:
    """The value a layer's input is quantized at, and the pass-through ops from it to
    the layer (first to last)."""
    path: list[ValueId] = []
    value = graph.operands(layer)[0]
    while isinstance(graph.node(value).op, PASS_THROUGH):
        path.append(value)
        value = graph.operands(value)[0]
    return value, path[::-1]


def quantize_weights(
    weights: np.ndarray, axis: int, bits: int, scheme: QuantScheme, per_channel: bool
) -> tuple[np.ndarray, DequantizeOp]:
    """Integer weights and the dequantize op that maps them back (per channel on `axis`)."""
    moved = np.moveaxis(np.asarray(weights, dtype=np.float64), axis, 0)
    rows = moved.reshape(moved.shape[0], -1) if per_channel else moved.reshape(1, -1)
    quantizers = [fit_quantizer(float(r.min()), float(r.max()), bits, scheme) for r in rows]
    scales = np.array([q.scale for q in quantizers]).reshape((-1,) + (1,) * (moved.ndim - 1))
    zeros = np.array([q.zero_point for q in quantizers]).reshape(scales.shape)
    low, high = quantizers[0].bounds
    integers = np.clip(np.rint(moved / scales) + zeros, low, high).astype(np.int64)
    dequantize = DequantizeOp(
        tuple(q.scale for q in quantizers),
        tuple(q.zero_point for q in quantizers),
        axis if per_channel else -1,
    )
    return np.moveaxis(integers, 0, axis), dequantize


@register_pass
@dataclass(frozen=True, slots=True)
class QuantizeTfhe(Pass):
    name = "quantize-tfhe"
    kind = PassKind.TRANSFORM
    bits: int = 6  # activations (and inputs)
    weight_bits: int = 0  # 0: as `bits`
    input_bits: int = 0  # the encrypted inputs of the first layers; 0: as `bits`
    scheme: QuantScheme = QuantScheme.ASYMMETRIC
    weight_scheme: QuantScheme = QuantScheme.SYMMETRIC
    per_channel: bool = True  # weights: one scale per output channel
    per_channel_activations: bool = False  # activations: one scale per input feature
    weight_fit: WeightFit = WeightFit.ACCUMULATOR

    def __post_init__(self) -> None:
        options = (
            ("bits", self.bits),
            ("weight_bits", self.weight_bits or 2),
            ("input_bits", self.input_bits or 2),
        )
        for option, value in options:
            if not 2 <= value <= MAX_BITS:
                raise FhecError(
                    f"quantize-tfhe: {option}={value} is out of range",
                    hint=f"choose 2 to {MAX_BITS} bits (concrete's widest table lookup)",
                )

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        layers = {v: axes for v in graph.topological_order() if (axes := _layer(graph, v))}
        if not layers:
            return
        if not context.calibration:
            raise CompileError(
                "the tfhe backend quantizes from calibration data, and none was given",
                graph.node(next(iter(layers))).location,
                hint="pass calibration=... (fhec compile --calibration DATA.npz)",
            )
        sources = self._source_axes(graph, layers)
        fitted = self._fitted_layers(graph, layers)
        calibrated = _sample_values(module, context.calibration, {*sources, *fitted.values()})
        ranges = _channel_ranges(calibrated, sources)
        after_layer = _downstream(graph, set(layers))
        layer_inputs = {
            layer: np.concatenate([values[source] for values in calibrated])
            for layer, source in fitted.items()
        }
        quantized: dict[ValueId, tuple[ValueId, list[Quantizer]]] = {}
        for layer, axes in layers.items():
            source, path = quantization_source(graph, layer)
            if source not in quantized:
                bits = self.bits if source in after_layer else self.input_bits or self.bits
                quantized[source] = self._quantize_activation(
                    graph, source, layer, ranges[source], sources[source], bits
                )
            dequantized, quantizers = quantized[source]
            first = path[0] if path else layer
            graph.set_operands(first, (dequantized, *graph.operands(first)[1:]))
            operands = graph.operands(layer)
            weights = self._quantize_weights(
                graph, layer, operands[1], axes, quantizers, layer_inputs.get(layer)
            )
            graph.set_operands(layer, (operands[0], weights, *operands[2:]))
            if not graph.users(operands[1]):
                graph.remove(operands[1])

    def _source_axes(
        self, graph: Graph, layers: dict[ValueId, LayerAxes]
    ) -> dict[ValueId, int | None]:
        """Each quantized activation's channel axis; None for one quantizer per tensor
        (asked for, or the layers reading it disagree on its feature axis)."""
        axes: dict[ValueId, int | None] = {}
        for layer, layer_axes_ in layers.items():
            source, path = quantization_source(graph, layer)
            op = graph.node(layer).op
            # per channel only where the scales map onto the weights' input channels
            channels = self.per_channel_activations and not path
            # (a padded Conv pads with one zero point, a grouped one mixes the mapping)
            channels = channels and not (isinstance(op, ConvOp) and (op.group > 1 or any(op.pads)))
            axis = layer_axes_.activation if channels else None
            axes[source] = axis if axes.get(source, axis) == axis else None
        return axes

    def _fitted_layers(
        self, graph: Graph, layers: dict[ValueId, LayerAxes]
    ) -> dict[ValueId, ValueId]:
        """The layers whose weights `weight_fit=accumulator` fits, with the value each
        reads: symmetric per-channel weights of a Gemm or MatMul that another layer
        follows; none under the range fit."""
        symmetric = self.weight_scheme is QuantScheme.SYMMETRIC and self.per_channel
        if self.weight_fit is WeightFit.RANGE or not symmetric:
            return {}
        # Only accumulators a lookup reads (a layer follows) have levels to fill; on
        # convolutions the fit cost more than it gained (measured: tfhe_weights.py).
        return {
            layer: graph.operands(layer)[0]
            for layer in layers
            if not isinstance(graph.node(layer).op, ConvOp)
            and _downstream(graph, {layer}) & layers.keys()
        }

    def _quantize_activation(
        self,
        graph: Graph,
        source: ValueId,
        layer: ValueId,
        ranges: tuple[np.ndarray, np.ndarray],
        axis: int | None,
        bits: int,
    ) -> tuple[ValueId, list[Quantizer]]:
        low, high = ranges
        if axis is None:
            interval = graph.node(source).annotation(Interval)
            if interval is not None and interval.is_finite():
                low, high = np.array([interval.lo]), np.array([interval.hi])
            low, high = np.array([low.min()]), np.array([high.max()])
        whole = fit_quantizer(float(low.min()), float(high.max()), bits, self.scheme)
        quantizers = [
            # A channel that calibration never moved takes the tensor's quantizer: a
            # scale of its own would be arbitrary, and it moves into the weights.
            fit_quantizer(float(lo), float(hi), bits, self.scheme) if hi > lo else whole
            for lo, hi in zip(low, high, strict=True)
        ]
        quantize = QuantizeOp(
            tuple(q.scale for q in quantizers),
            tuple(q.zero_point for q in quantizers),
            axis if axis is not None else -1,
            bits,
            quantizers[0].signed,
        )
        # Scales move into the weights (module docstring): dequantize to steps, q - z.
        steps = DequantizeOp((1.0,) * len(quantizers), quantize.zero_point, quantize.axis)
        at = graph.node(layer).location
        quantized = graph.add(quantize, [source], _infer(quantize, graph, source), at)
        return graph.add(steps, [quantized], _infer(steps, graph, quantized), at), quantizers

    def _quantize_weights(
        self,
        graph: Graph,
        layer: ValueId,
        value: ValueId,
        axes: LayerAxes,
        quantizers: list[Quantizer],
        inputs: np.ndarray | None,
    ) -> ValueId:
        weights = graph.node(value).op
        assert isinstance(weights, ConstantOp)
        scales = np.array([q.scale for q in quantizers])
        array = np.asarray(weights.value.array, dtype=np.float64)
        scaled = array * scales.reshape((-1,) + (1,) * (-axes.weight_input - 1))
        bits = self.weight_bits or self.bits
        if inputs is not None:
            op = graph.node(layer).op
            integers, dequantize = _fitted_weights(op, scaled, axes, quantizers, inputs, bits)
        else:
            integers, dequantize = quantize_weights(
                scaled, axes.weight_output, bits, self.weight_scheme, self.per_channel
            )
        at = graph.node(layer).location
        constant = ConstantOp.of(integers)
        stored = graph.add(constant, [], constant.value.type, at)
        return graph.add(dequantize, [stored], _infer(dequantize, graph, stored), at)


def _layer(graph: Graph, value: ValueId) -> LayerAxes | None:
    """The layer axes of `value` when it is a layer with a secret input and constant weights."""
    operands = graph.operands(value)
    if len(operands) < 2 or not graph.node(operands[0]).type.secret:
        return None
    weights = graph.node(operands[1])
    if not isinstance(weights.op, ConstantOp):
        return None  # lower-to-integer says why it cannot compute this layer
    return layer_axes(graph.node(value).op, weights.type.rank)


def _downstream(graph: Graph, layers: set[ValueId]) -> set[ValueId]:
    """Values computed from a layer's output."""
    after: set[ValueId] = set()
    for value in graph.topological_order():
        if any(o in after or o in layers for o in graph.operands(value)):
            after.add(value)
    return after


def _sample_values(
    module: Module, samples: Sequence[Sample], kept: Collection[ValueId]
) -> list[dict[ValueId, np.ndarray]]:
    """The `kept` values of the module on each calibration sample (one evaluation each)."""
    found = []
    for sample in samples:
        values = evaluate_all(module, sample)
        found.append({v: np.asarray(values[v], dtype=np.float64) for v in kept})
    return found


def _channel_ranges(
    calibrated: Sequence[dict[ValueId, np.ndarray]], sources: dict[ValueId, int | None]
) -> dict[ValueId, tuple[np.ndarray, np.ndarray]]:
    """Per-channel [min, max] of each source over the calibration samples (one channel
    when the source is quantized per tensor)."""
    ranges: dict[ValueId, tuple[np.ndarray, np.ndarray]] = {}
    for values in calibrated:
        for source, axis in sources.items():
            array = values[source]
            rows = (
                np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
                if axis
                else array.reshape(1, -1)
            )
            low, high = rows.min(axis=1), rows.max(axis=1)
            if source in ranges:
                low = np.minimum(low, ranges[source][0])
                high = np.maximum(high, ranges[source][1])
            ranges[source] = (low, high)
    return ranges


def _fitted_weights(
    layer: Op,
    scaled: np.ndarray,
    axes: LayerAxes,
    quantizers: list[Quantizer],
    inputs: np.ndarray,
    bits: int,
) -> tuple[np.ndarray, DequantizeOp]:
    """A dense layer's weights quantized per output channel on its calibrated
    accumulators (passes/tfhe_weights.py): the layer, bias left out, applied to the
    integers it reads (x / s + z) by its float weights in quantization steps."""
    steps = np.array([q.scale for q in quantizers])
    zeros = np.array([q.zero_point for q in quantizers], dtype=np.float64)
    accumulators = layer.evaluate([inputs / steps + zeros, scaled])  # channels last
    magnitudes = np.abs(accumulators.reshape(-1, accumulators.shape[-1])).max(axis=0)
    weights = np.moveaxis(scaled, axes.weight_output, 0)
    scales = accumulator_scales(np.abs(weights).max(axis=1), magnitudes, bits)
    integers = np.rint(weights / scales[:, None]).astype(np.int64)
    dequantize = DequantizeOp(
        tuple(float(s) for s in scales), (0,) * len(scales), axes.weight_output
    )
    return np.moveaxis(integers, 0, axes.weight_output), dequantize


def _infer(op: Op, graph: Graph, operand: ValueId) -> TensorType:
    return op.infer([graph.node(operand).type])
