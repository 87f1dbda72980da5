"""lower-to-integer, phase 1: each encrypted layer as an integer product with clear
integer weights, and a `tfhe.dequantize` back to floats (see lower_to_integer.py).

A layer y = alpha * x @ W + beta * C, with x ~ s_x (q - z_x) and W ~ s_w[j] * W_int[:, j],
becomes acc = q @ W_int (exact integers) and
y[:, j] = alpha * s_x * s_w[j] * (acc[:, j] - z_x * sum_k W_int[k, j]) + beta * C[j]:
a per-channel dequantize plus a float bias; a Conv likewise per output channel. The
reshapes and pools between a quantizer and its layer are computed on the integers:
average pools as window sums, max pools as taps reduced by exact pairwise maxima.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import CompileError, InternalCompilerError
from fhec.ir.graph import Graph, Module, Node, ValueId
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import AddOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, MaxPoolOp
from fhec.ir.ops.shape import PadOp, ReshapeOp
from fhec.ir.ops.tfhe import DequantizeOp, QuantizeOp, channel_array
from fhec.ir.types import DType, TensorType
from fhec.passes.quantize_tfhe import PASS_THROUGH, layer_axes
from fhec.passes.tfhe_integers import max_of, relu_lookup
from fhec.passes.tfhe_integers import result_type as _type


def _is_encrypted_layer(graph: Graph, value: ValueId) -> bool:
    operands = graph.operands(value)
    op = graph.node(value).op
    if len(operands) < 2 or not graph.node(operands[0]).type.secret:
        return False
    return layer_axes(op, graph.node(operands[1]).type.rank) is not None


@dataclass(frozen=True, slots=True)
class _Integers:
    """Encrypted integers a layer reads: its float input is scale * (value - zero)."""

    value: ValueId
    scale: float
    zero: np.ndarray  # one, or one per input channel


def lower_layers(module: Module) -> None:
    """Every encrypted layer, in topological order (see the module docstring)."""
    built: dict[ValueId, _Integers] = {}  # pass-through ops lowered so far
    for value in module.graph.topological_order():
        if _is_encrypted_layer(module.graph, value):
            _lower_layer(module, value, built)


def _lower_layer(module: Module, value: ValueId, built: dict[ValueId, _Integers]) -> None:
    graph = module.graph
    node = graph.node(value)
    operands = graph.operands(value)
    weights, w_dequantize = _quantized_weights(graph, value, operands[1])
    x = _integer_input(graph, value, operands[0], built)
    alpha, beta, axis = 1.0, 1.0, -1
    if isinstance(node.op, GemmOp):
        if node.op.trans_a:
            raise CompileError(
                "Gemm with transA=1 on an encrypted input is not supported",
                node.location,
                hint="export the model without transposing the activations",
            )
        alpha, beta = node.op.alpha, node.op.beta
        weights = weights.T if node.op.trans_b else weights
    if isinstance(node.op, ConvOp):
        # concrete convolves without padding: pad the integers first, with the zero
        # point (float 0), so every tap reads a value the zero correction expects
        x = _padded(graph, node, x)
        integer_op: Op = replace(node.op, pads=(0,) * len(node.op.pads))
        zero = _conv_zero(x, weights)
        axis = 1 - weights.ndim  # the output's channel axis (1), from the end
    else:  # Gemm, or a MatMul by a matrix (layer_axes admits no other)
        integer_op = MatMulOp()
        # acc counts from the zero points: sum_k (q_k - z_k) W[k, j] = acc_j - sum_k z_k W[k, j]
        zero = np.broadcast_to(x.zero, weights.shape[:1]) @ weights
    scale = np.broadcast_to(np.asarray(w_dequantize.scale) * (alpha * x.scale), zero.shape)
    at = node.location
    constant = graph.add(ConstantOp.of(weights), [], TensorType(weights.shape, DType.I64), at)
    product = graph.add(
        integer_op, [x.value, constant], _type(integer_op, graph, x.value, constant), at
    )
    dequantize = DequantizeOp(tuple(float(s) for s in scale), tuple(int(z) for z in zero), axis)
    result = graph.add(dequantize, [product], _type(dequantize, graph, product), at)
    if len(operands) == 3:
        result = _add_bias(graph, value, result, operands[2], beta, -axis - 1)
    module.function.replace_uses(value, result)
    graph.remove(value)


def _padded(graph: Graph, node: Node, x: _Integers) -> _Integers:
    assert isinstance(node.op, ConvOp)
    if not any(node.op.pads):
        return x
    if x.zero.size != 1:  # quantize-tfhe quantizes a padded Conv's input per tensor
        raise InternalCompilerError(
            f"per-channel integers reach {node.location.describe()}", "lower-to-integer"
        )
    half = len(node.op.pads) // 2
    pads = (0, 0, *node.op.pads[:half], 0, 0, *node.op.pads[half:])
    pad = PadOp(pads, float(x.zero[0]))
    padded = graph.add(pad, [x.value], _type(pad, graph, x.value), node.location)
    return _Integers(padded, x.scale, x.zero)


def _conv_zero(x: _Integers, weights: np.ndarray) -> np.ndarray:
    """sum over (c, *k) of z_c W[m, c, *k], per output channel m."""
    zeros = np.broadcast_to(x.zero, (weights.shape[1],)) if x.zero.size == 1 else x.zero
    taps = weights.reshape(weights.shape[0], weights.shape[1], -1).sum(axis=2)
    return np.asarray(taps @ zeros, dtype=np.int64)


def _integer_input(
    graph: Graph, layer: ValueId, operand: ValueId, built: dict[ValueId, _Integers]
) -> _Integers:
    """The integers behind a layer's input: a quantizer's, through the reshapes and
    average pools quantize-tfhe left between it and the layer."""
    node = graph.node(operand)
    producers = graph.operands(operand)
    if isinstance(node.op, DequantizeOp) and isinstance(graph.node(producers[0]).op, QuantizeOp):
        zero = np.asarray(node.op.zero_point, dtype=np.int64)
        return _Integers(producers[0], _uniform(node.op.scale, node.location), zero)
    if isinstance(node.op, PASS_THROUGH):
        if operand not in built:
            inner = _integer_input(graph, layer, producers[0], built)
            built[operand] = _pass_through(graph, operand, inner)
        return built[operand]
    raise CompileError(
        "the encrypted input of this layer is not quantized",
        graph.node(layer).location,
        hint="run quantize-tfhe before lower-to-integer",
    )


def _pass_through(graph: Graph, value: ValueId, inner: _Integers) -> _Integers:
    node = graph.node(value)
    at = node.location
    if inner.zero.size != 1:  # quantize-tfhe quantizes per tensor before these
        raise InternalCompilerError(
            f"per-channel integers reach {at.describe()}", "lower-to-integer"
        )
    if isinstance(node.op, ReshapeOp):
        reshaped = graph.add(node.op, [inner.value], _type(node.op, graph, inner.value), at)
        return _Integers(reshaped, inner.scale, inner.zero)
    if isinstance(node.op, MaxPoolOp):
        return _max_pool(graph, value, inner)
    assert isinstance(node.op, AvgPoolOp)
    if any(node.op.pads) or node.op.ceil_mode:  # windows of unequal sizes
        raise CompileError(
            "AveragePool with padding or ceil_mode between encrypted layers is not supported",
            at,
            hint="pool without padding, or run the pool in clear after the last layer",
        )
    # A mean is a sum over each window (a grouped convolution by ones) over K taps:
    # the 1/K goes into the scale, and the zero point counts K times.
    channels = graph.node(inner.value).type.shape[1]
    ones = np.ones((channels, 1, *node.op.kernel), dtype=np.int64)
    taps = int(np.prod(node.op.kernel))
    window_sum = ConvOp(node.op.strides, node.op.pads, node.op.dilations, channels)
    constant = graph.add(ConstantOp.of(ones), [], TensorType(ones.shape, DType.I64), at)
    summed = graph.add(
        window_sum, [inner.value, constant], _type(window_sum, graph, inner.value, constant), at
    )
    return _Integers(summed, inner.scale / taps, inner.zero * taps)


def _max_pool(graph: Graph, value: ValueId, inner: _Integers) -> _Integers:
    """The window maxima of quantized integers (same scale and zero point): one tap
    per kernel position, reduced pairwise by a + relu(b - a), one lookup each."""
    node = graph.node(value)
    op, at = node.op, node.location
    assert isinstance(op, MaxPoolOp)
    if op.ceil_mode:
        raise CompileError(
            "MaxPool with ceil_mode between encrypted layers is not supported",
            at,
            hint="pool with ceil_mode=0, or run the pool in clear after the last layer",
        )
    low, high = _quantized_bounds(graph, inner.value, at)
    x = inner.value
    if any(op.pads):  # the lowest integer never wins a window, as ONNX's -inf
        half = len(op.pads) // 2
        pad = PadOp((0, 0, *op.pads[:half], 0, 0, *op.pads[half:]), float(low))
        x = graph.add(pad, [x], _type(pad, graph, x), at)
    taps = [_tap(graph, x, op, position, at) for position in np.ndindex(*op.kernel)]
    relu = relu_lookup(high - low)  # b - a lies in [-spread, spread]: exact, never rounded
    while len(taps) > 1:
        pairs = zip(taps[0::2], taps[1::2], strict=False)
        reduced = [max_of(graph, a, b, relu, at) for a, b in pairs]
        taps = reduced + taps[len(reduced) * 2 :]
    return _Integers(taps[0], inner.scale, inner.zero)


def _tap(
    graph: Graph, x: ValueId, op: MaxPoolOp, position: tuple[int, ...], at: Location
) -> ValueId:
    """The window element at `position` of every window: a grouped convolution by a
    one-hot kernel (concrete has no strided slicing of encrypted tensors)."""
    channels = graph.node(x).type.shape[1]
    one_hot = np.zeros((channels, 1, *op.kernel), dtype=np.int64)
    one_hot[(slice(None), 0, *position)] = 1
    tap = ConvOp(op.strides, (0,) * len(op.pads), op.dilations, channels)
    kernel = graph.add(ConstantOp.of(one_hot), [], TensorType(one_hot.shape, DType.I64), at)
    return graph.add(tap, [x, kernel], _type(tap, graph, x, kernel), at)


def _quantized_bounds(graph: Graph, value: ValueId, at: Location) -> tuple[int, int]:
    """The integers a quantizer can give, seen through reshapes and paddings."""
    op = graph.node(value).op
    if isinstance(op, QuantizeOp):
        if op.signed:
            return -((1 << (op.bits - 1)) - 1), (1 << (op.bits - 1)) - 1
        return 0, (1 << op.bits) - 1
    if isinstance(op, ReshapeOp | PadOp):
        return _quantized_bounds(graph, graph.operands(value)[0], at)
    raise CompileError(
        "MaxPool between encrypted layers must read an activation's quantized output",
        at,
        hint="pool right after the activation (or the input), before any average pool",
    )


def _uniform(scales: tuple[float, ...], location: Location) -> float:
    if len(set(scales)) != 1:  # quantize-tfhe moves per-channel scales into the weights
        raise InternalCompilerError(
            f"the input of {location.describe()} keeps per-channel scales", "lower-to-integer"
        )
    return scales[0]


def _quantized_weights(
    graph: Graph, layer: ValueId, operand: ValueId
) -> tuple[np.ndarray, DequantizeOp]:
    op = graph.node(operand).op
    producers = graph.operands(operand)
    if isinstance(op, DequantizeOp):
        stored = graph.node(producers[0]).op
        if isinstance(stored, ConstantOp):
            zero = channel_array(op.zero_point, op.axis).astype(np.int64)
            return stored.value.array.astype(np.int64) - zero, op
    location = graph.node(layer).location
    if graph.node(operand).type.secret:
        raise CompileError(
            "this layer multiplies two encrypted tensors; the TFHE backend needs clear weights",
            location,
            hint="make the weights (input 1) an initializer, not a function of the input",
        )
    raise CompileError(
        "the weights of this layer are not quantized",
        location,
        hint="run quantize-tfhe before lower-to-integer",
    )


def _add_bias(
    graph: Graph, layer: ValueId, result: ValueId, bias: ValueId, beta: float, trailing: int
) -> ValueId:
    """result + beta * bias, the bias given `trailing` unit axes (a Conv's is per channel)."""
    stored = graph.node(bias).op
    at = graph.node(layer).location
    if not isinstance(stored, ConstantOp):
        raise CompileError("the bias of this layer must be a constant", at)
    scaled = (np.asarray(stored.value.array, dtype=np.float64) * beta).astype(np.float32)
    scaled = scaled.reshape(scaled.shape + (1,) * trailing)
    constant = graph.add(ConstantOp.of(scaled), [], TensorType(scaled.shape, DType.F32), at)
    return graph.add(AddOp(), [result, constant], _type(AddOp(), graph, result, constant), at)
