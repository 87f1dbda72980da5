"""lower-to-integer: integer layers with clear weights, and one table lookup between them.

Applies to: the QDQ form quantize-tfhe establishes. Requires: `quantize-tfhe`, and
calibration samples in the pass context (they size the lookup tables).
Establishes three regions, told apart by `partition` below:
- client, before encryption: every node the inputs reach before a `tfhe.quantize`
  (in clear; the quantize ops are where the client encrypts);
- server: i64 `linalg.matmul` / `linalg.conv` of encrypted integers by clear integer
  weights (average pools become window sums, a grouped convolution by ones; Flatten a
  `tensor.reshape`; a Conv's padding a `tensor.pad` with the zero point), max pools
  as taps (grouped convolutions by one-hot kernels) reduced pairwise by
  max(a, b) = a + relu(b - a), the relu a `tfhe.lookup` of the exact difference, and
  `tfhe.lookup`: a layer's accumulator goes straight into one lookup that applies,
  in one table, its requantization (scales, zero points, bias) and every univariate
  op up to the next layer's quantizer (ReLU, Sigmoid, GELU, arithmetic with
  constants, ...);
- client, after decryption: `tfhe.dequantize` of an accumulator and what follows,
  in float: the last layer's bias and activation never cost a lookup.

Rewrite of a layer y = alpha * x @ W + beta * C, with x ~ s_x (q - z_x) and
W ~ s_w[j] * W_int[:, j]: acc = q @ W_int (exact integers), and
y[:, j] = alpha * s_x * s_w[j] * (acc[:, j] - z_x * sum_k W_int[k, j]) + beta * C[j],
a `tfhe.dequantize` (per channel) plus a float bias; a Conv likewise per output
channel. A lookup tabulates that and the ops after it on every integer an
accumulator can hold: the power-of-two range that covers its calibrated values, as
concrete's table covers it, sampled every 2^(width - table_bits) when wider
(round-accumulators then reads only those points).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import CompileError, FhecError, InternalCompilerError
from fhec.ir.graph import Graph, Module, Node, ValueId
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.common import BinaryElementwise, UnaryElementwise
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, SubOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, MaxPoolOp
from fhec.ir.ops.shape import PadOp, ReshapeOp
from fhec.ir.ops.tfhe import DequantizeOp, LookupOp, QuantizeOp, RoundOp, channel_array
from fhec.ir.types import DType, TensorType
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass
from fhec.passes.quantize_tfhe import PASS_THROUGH, layer_axes

SERVER_OPS = (MatMulOp, ConvOp, PadOp, ReshapeOp, LookupOp, RoundOp, AddOp, SubOp)
_CHUNK = 1 << 22  # table entries computed per numpy call


@dataclass(frozen=True, slots=True)
class Partition:
    """Who computes what (see the module docstring). Each tuple is in topological order."""

    client_before: tuple[ValueId, ...]
    encrypted_inputs: tuple[ValueId, ...]  # the tfhe.quantize values the client encrypts
    server: tuple[ValueId, ...]
    encrypted_outputs: tuple[ValueId, ...]  # server values the client decrypts
    client_after: tuple[ValueId, ...]


def partition(module: Module) -> Partition:
    graph = module.graph
    order = graph.topological_order()
    inputs: list[ValueId] = []
    encrypted: set[ValueId] = set()  # the encrypted inputs and every server value
    after: set[ValueId] = set()
    for value in order:
        op = graph.node(value).op
        operands = graph.operands(value)
        if any(o in after for o in operands):
            after.add(value)
        elif isinstance(op, QuantizeOp):
            inputs.append(value)
            encrypted.add(value)
        elif any(o in encrypted for o in operands):
            (after if isinstance(op, DequantizeOp) else encrypted).add(value)
    decrypted = {o for v in after for o in graph.operands(v) if o in encrypted}
    decrypted |= {v for _, v in module.function.outputs if v in encrypted}
    server = encrypted - set(inputs)
    return Partition(
        tuple(v for v in order if v not in encrypted and v not in after),
        tuple(inputs),
        tuple(v for v in order if v in server),
        tuple(v for v in order if v in decrypted),
        tuple(v for v in order if v in after),
    )


@register_pass
@dataclass(frozen=True, slots=True)
class LowerToInteger(Pass):
    name = "lower-to-integer"
    kind = PassKind.TRANSFORM
    # Lookups are tabulated on at most 2^table_bits points (see the module docstring).
    table_bits: int = 20

    def __post_init__(self) -> None:
        if not 8 <= self.table_bits <= 24:
            raise FhecError(f"lower-to-integer: table_bits={self.table_bits} must be 8 to 24")

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        built: dict[ValueId, _Integers] = {}  # pass-through ops lowered so far
        for value in graph.topological_order():
            if _is_encrypted_layer(graph, value):
                _lower_layer(module, value, built)
        if not any(isinstance(graph.node(v).op, QuantizeOp) for v in graph):
            raise CompileError(
                "the model has no layer to compute on encrypted data",
                graph.node(module.function.outputs[0][1]).location,
                hint="the TFHE backend runs Gemm / MatMul layers with constant weights, "
                "fed by an encrypted input",
            )
        ranges = calibrated_integer_ranges(module, context.calibration)
        for value in graph.topological_order():
            if value in graph and _needs_lookup(graph, value, ranges):
                self._fuse(module, value, ranges)
        _remove_dead(module)
        _check_server(module)

    def _fuse(self, module: Module, quantize: ValueId, ranges: dict[ValueId, range]) -> None:
        graph = module.graph
        chain = _univariate_chain(graph, graph.operands(quantize)[0], set(ranges))
        source = graph.operands(chain[0])[0]
        chain.append(quantize)
        domain = _domain(ranges[source], self.table_bits)
        table = _tabulate(graph, chain, source, domain)
        location = _chain_location(graph, chain)
        lookup = graph.add(table, [source], table.infer([graph.node(source).type]), location)
        module.function.replace_uses(quantize, lookup)
        graph.remove(quantize)


# -- phase 1: layers ---------------------------------------------------------------


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
    spread = high - low  # b - a lies in [-spread, spread]: exact, never rounded
    width, _ = integer_width(range(-spread, spread + 1))
    domain = np.arange(-(1 << (width - 1)), 1 << (width - 1), dtype=np.int64)
    relu = LookupOp.tabulate(domain, np.maximum(domain, 0))
    while len(taps) > 1:
        pairs = zip(taps[0::2], taps[1::2], strict=False)
        reduced = [_max_of(graph, a, b, relu, at) for a, b in pairs]
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


def _max_of(graph: Graph, a: ValueId, b: ValueId, relu: LookupOp, at: Location) -> ValueId:
    difference = graph.add(SubOp(), [b, a], _type(SubOp(), graph, b, a), at)
    rectified = graph.add(relu, [difference], _type(relu, graph, difference), at)
    return graph.add(AddOp(), [a, rectified], _type(AddOp(), graph, a, rectified), at)


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


def _type(op: Op, graph: Graph, *operands: ValueId) -> TensorType:
    return op.infer([graph.node(o).type for o in operands])


# -- phase 2: calibration of the integers ---------------------------------------------


def calibrated_integer_ranges(module: Module, samples: Sequence[Sample]) -> dict[ValueId, range]:
    """The calibrated values of every encrypted integer (quantizer outputs and what the
    server computes from them), as a range of ints."""
    from fhec.backends.reference import evaluate_all  # backends sit above passes

    if not samples:
        raise CompileError(
            "the TFHE integer passes need calibration data: it sets the lookups' widths",
            hint="pass calibration=... (fhec compile --calibration DATA.npz)",
        )
    graph = module.graph
    integers = [
        v
        for v in graph
        if isinstance(graph.node(v).op, (QuantizeOp, *SERVER_OPS))
        and not graph.node(v).type.dtype.is_float
    ]
    seen: dict[ValueId, tuple[int, int]] = {}
    for sample in samples:
        values = evaluate_all(module, sample)
        for value in integers:
            low, high = int(values[value].min()), int(values[value].max())
            if value in seen:
                low, high = min(low, seen[value][0]), max(high, seen[value][1])
            seen[value] = (low, high)
    return {value: range(low, high + 1) for value, (low, high) in seen.items()}


# -- phase 3: one lookup per requantization -------------------------------------------


def _needs_lookup(graph: Graph, value: ValueId, ranges: dict[ValueId, range]) -> bool:
    """A quantizer of values computed on the server (not one the client applies)."""
    if not isinstance(graph.node(value).op, QuantizeOp):
        return False
    return any(a in ranges for a in graph.ancestors(value))


def _univariate_chain(graph: Graph, value: ValueId, integers: set[ValueId]) -> list[ValueId]:
    """The nodes from a dequantized server integer to `value`, each a univariate function
    of the one before (its other operands constants); a CompileError naming the first
    node that is not."""
    chain: list[ValueId] = []
    while True:
        node = graph.node(value)
        operands = graph.operands(value)
        if isinstance(node.op, DequantizeOp) and operands[0] in integers:
            return [value, *reversed(chain)]
        variable = [o for o in operands if not isinstance(graph.node(o).op, ConstantOp)]
        elementwise = isinstance(node.op, UnaryElementwise | BinaryElementwise)
        if not elementwise or len(variable) != 1 or graph.node(variable[0]).type != node.type:
            raise CompileError(
                f"{node.op.name} cannot be computed between two encrypted layers",
                node.location,
                hint="between layers the TFHE backend fuses univariate ops (activations, "
                "arithmetic with constants) into one table lookup; this op is not one",
            )
        chain.append(value)
        value = variable[0]


def _domain(calibrated: range, table_bits: int) -> np.ndarray:
    """The integers concrete's table covers for these calibrated values (a signed or
    unsigned power-of-two range), every 2^k-th one when there are over 2^table_bits."""
    width, signed = integer_width(calibrated)
    start = -(1 << (width - 1)) if signed else 0
    step = 1 << max(0, width - table_bits)
    return np.arange(start, start + (1 << width), step, dtype=np.int64)


def _bits(magnitude: int) -> int:
    return max(1, int(magnitude).bit_length())


def integer_width(calibrated: range) -> tuple[int, bool]:
    """(width, signed) of the integer type concrete assigns to these values."""
    low, high = calibrated.start, calibrated.stop - 1
    if low < 0:
        return max((-low - 1).bit_length(), high.bit_length()) + 1, True
    return _bits(high), False


def _tabulate(graph: Graph, chain: list[ValueId], source: ValueId, domain: np.ndarray) -> LookupOp:
    rank = graph.node(source).type.rank
    table_shape = _table_shape(graph, chain, rank)
    rows = max(1, _CHUNK // max(1, int(np.prod(table_shape))))
    pieces = []
    for start in range(0, len(domain), rows):
        block = domain[start : start + rows].reshape((-1,) + (1,) * rank)
        out = _evaluate_chain(graph, chain, source, block)
        pieces.append(np.broadcast_to(out, (len(block), *table_shape)))
    outputs = np.concatenate(pieces)
    if all(d == 1 for d in table_shape):
        outputs = outputs.reshape(len(domain))
    return LookupOp.tabulate(domain, outputs)


def _table_shape(graph: Graph, chain: list[ValueId], rank: int) -> tuple[int, ...]:
    """The smallest shape the chain's parameters vary over (one table per channel, say)."""
    shape = [1] * rank
    for value in chain:
        op = graph.node(value).op
        if isinstance(op, DequantizeOp | QuantizeOp) and len(op.scale) > 1:
            shape[op.axis] = len(op.scale)
        for operand in graph.operands(value):
            stored = graph.node(operand).op
            if isinstance(stored, ConstantOp):
                dims = stored.value.shape
                for axis in range(1, len(dims) + 1):
                    shape[-axis] = max(shape[-axis], dims[-axis])
    return tuple(shape)


def _evaluate_chain(
    graph: Graph, chain: list[ValueId], source: ValueId, block: np.ndarray
) -> np.ndarray:
    values: dict[ValueId, np.ndarray] = {source: block}
    for value in chain:
        operands = []
        for operand in graph.operands(value):
            stored = graph.node(operand).op
            operands.append(values[operand] if operand in values else _constant(stored))
        with np.errstate(all="ignore"):  # tables cover values no sample reaches
            values[value] = graph.node(value).op.evaluate(operands)
    return values[chain[-1]]


def _constant(op: Op) -> np.ndarray:
    if not isinstance(op, ConstantOp):
        raise InternalCompilerError(
            f"{op.name} in a lookup chain is not constant", "lower-to-integer"
        )
    return op.value.array


def _chain_location(graph: Graph, chain: list[ValueId]) -> Location:
    """The last op before the quantizer: the activation the lookup stands for."""
    return graph.node(chain[-2]).location


def _check_server(module: Module) -> None:
    graph = module.graph
    for value in partition(module).server:
        op = graph.node(value).op
        if not isinstance(op, SERVER_OPS):
            raise InternalCompilerError(
                f"{op.name} at {graph.node(value).location.describe()} is left on encrypted "
                "integers",
                "lower-to-integer",
            )


def _remove_dead(module: Module) -> None:
    graph = module.graph
    live: set[ValueId] = set()
    for _, value in module.function.outputs:
        live |= {value} | graph.ancestors(value)
    for value in reversed(graph.topological_order()):
        if value not in live and not isinstance(graph.node(value).op, InputOp):
            graph.remove(value)
