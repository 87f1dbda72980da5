"""lower-to-integer, phase 2: a Softmax or LogSoftmax between encrypted layers, as
lookups and integer sums (see lower_to_integer.py).

softmax(y)_j = exp(y_j - m - log S) with m = max_k y_k and S = sum_k exp(y_k - m),
computed on the integers t = Q(y) of an n-bit quantizer of y's calibrated range
(step s; n the next layer's input bits unless `softmax_bits` says otherwise):
- t = Q(y): a `tfhe.quantize`, which the lookup phase fuses with the layer before;
- m = max_k t_k: pairwise maxima a + relu(b - a), one exact lookup each, as MaxPool
  (the halves of t picked by products with clear 0/1 matrices: concrete has no
  strided slicing of encrypted tensors);
- d = t - m in [-(2^n - 1), 0], exact (m broadcast by a product with ones);
- e = round((2^n - 1) exp(s d)): one lookup each, and S' = sum_k e_k, a product by ones;
- L = round(log(S' / (2^n - 1)) / s): one lookup, log S in steps of y;
- z = d - L ~ (y_j - m - log S) / s, so log_softmax(y) = s z and softmax(y) = exp(s z):
  a `tfhe.dequantize` (and an `arith.exp`) that the lookup phase fuses with the next
  layer's quantizer into one lookup of z.
The shift by m is what keeps it exact enough: the largest e is always 2^n - 1, so S'
keeps n significant bits whatever y's range (a shift by a constant from calibration
would let every e of a sample with small logits round to 0). Error of the exponent
(y_j - m - log S) / s: at most 1 from d (t and m round to the grid), 1 from the d_k
inside S', 1/2 from L's rounding, plus log S' / S from e's rounding (C / 2^(n+1)) and
round-accumulators' rounding of S' (2^-(bits-1)): softmax within a factor
exp(+-(2.5 s + C / 2^(n+1) + 2^-(bits-1))) of the exact value (tests/tfhe/test_softmax.py
checks it), about what quantizing y alone costs. Every integer here is bounded by
construction, whatever the input (S' <= C (2^n - 1) for flat logits, which calibration
may never show): the bounds go on as `#range`, and the widths follow them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fhec.ir.errors import CompileError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import ExpOp, SubOp
from fhec.ir.ops.linalg import MatMulOp
from fhec.ir.ops.nn import LogSoftmaxOp, SoftmaxOp
from fhec.ir.ops.tfhe import DequantizeOp, LookupOp, QuantizeOp
from fhec.ir.types import DType, TensorType
from fhec.passes.base import Sample
from fhec.passes.tfhe_integers import (
    SERVER_OPS,
    calibrated_extremes,
    max_of,
    relu_lookup,
    result_type,
)
from fhec.passes.tfhe_lookups import table_domain


def lower_softmaxes(module: Module, samples: Sequence[Sample], bits: int, table_bits: int) -> None:
    """Every Softmax / LogSoftmax between two encrypted layers (`bits` 0: the next
    layer's input bits). One before the first layer or after the last is left to the
    client, in clear."""
    graph = module.graph
    found = [v for v in graph.topological_order() if _between_layers(graph, v)]
    if not found:
        return
    ranges = calibrated_extremes(module, samples, [graph.operands(v)[0] for v in found])
    for value in found:
        n = bits or _next_bits(graph, value)
        _lower(module, value, ranges[graph.operands(value)[0]], n, table_bits)


def _between_layers(graph: Graph, value: ValueId) -> bool:
    if not isinstance(graph.node(value).op, SoftmaxOp | LogSoftmaxOp):
        return False
    ancestors = graph.ancestors(value)
    after_layer = any(
        isinstance(graph.node(a).op, DequantizeOp)
        and isinstance(graph.node(graph.operands(a)[0]).op, SERVER_OPS)
        for a in ancestors
    )
    return after_layer and _next_bits(graph, value) > 0


def _next_bits(graph: Graph, value: ValueId) -> int:
    """The bits of a quantizer computed from `value` (0 when none: nothing encrypted
    follows)."""
    for quantize in graph:
        op = graph.node(quantize).op
        if isinstance(op, QuantizeOp) and value in graph.ancestors(quantize):
            return op.bits
    return 0


def _lower(
    module: Module, value: ValueId, calibrated: tuple[float, float], bits: int, table_bits: int
) -> None:
    graph = module.graph
    node = graph.node(value)
    op, at = node.op, node.location
    assert isinstance(op, SoftmaxOp | LogSoftmaxOp)
    y = graph.operands(value)[0]
    shape = graph.node(y).type.shape
    if op.axis % len(shape) != len(shape) - 1:
        raise CompileError(
            f"{type(op).__name__.removesuffix('Op')} over axis {op.axis} of a rank-{len(shape)} "
            "tensor between encrypted layers is not supported: only over the last axis",
            at,
            hint="take the softmax over the last axis (transpose before it in the model)",
        )
    top = (1 << bits) - 1
    # Only differences of t matter: its n bits span y's calibrated range, 0 or not.
    scale = (calibrated[1] - calibrated[0]) / top or 1.0
    quantize = QuantizeOp((scale,), (-round(calibrated[0] / scale),), -1, bits, False)
    t = graph.add(quantize, [y], result_type(quantize, graph, y), at)
    channels = shape[-1]
    d = _minus(graph, t, _row_max(graph, t, top, at), at, top)
    exp_domain = np.arange(-top, 1, dtype=np.int64)
    exps = np.rint(top * np.exp(scale * exp_domain)).astype(np.int64)
    e = _lookup(graph, LookupOp.tabulate(exp_domain, exps), d, at, top)
    total = _product(graph, e, np.ones((channels, 1), dtype=np.int64), at, channels * top)
    sums = table_domain(range(0, channels * top + 1), table_bits)
    logs = np.maximum(np.rint(np.log(np.maximum(sums, 1) / top) / scale), 0).astype(np.int64)
    log_total = _lookup(graph, LookupOp.tabulate(sums, logs), total, at, int(logs.max()))
    z = _minus(graph, d, log_total, at, top + int(logs.max()))
    steps = DequantizeOp((scale,), (0,), -1)
    result = graph.add(steps, [z], result_type(steps, graph, z), at)
    if isinstance(op, SoftmaxOp):
        result = graph.add(ExpOp(), [result], result_type(ExpOp(), graph, result), at)
    module.function.replace_uses(value, result)
    graph.remove(value)


def _row_max(graph: Graph, t: ValueId, top: int, at: Location) -> ValueId:
    """max over the last axis, kept as an axis of 1: halve the columns until one is
    left (a + relu(b - a) per pair; an odd last column is paired with itself)."""
    relu = relu_lookup(top)
    current = t
    while (width := graph.node(current).type.shape[-1]) > 1:
        half = (width + 1) // 2
        first = np.eye(width, half, dtype=np.int64)  # columns 0 .. half - 1
        second = np.zeros((width, half), dtype=np.int64)  # columns half .. width - 1
        second[np.arange(half, width), np.arange(width - half)] = 1
        if width % 2:
            second[half - 1, half - 1] = 1
        a, b = _product(graph, current, first, at, top), _product(graph, current, second, at, top)
        current = _bound(graph, max_of(graph, a, b, relu, at), 0, top)  # a + relu(b - a)
        rectified = _bound(graph, graph.operands(current)[1], 0, top)
        _bound(graph, graph.operands(rectified)[0], -top, top)
    return current


def _minus(graph: Graph, x: ValueId, column: ValueId, at: Location, spread: int) -> ValueId:
    """x - column, in [-spread, 0]: the (..., 1) column broadcast over x's last axis by
    a product with ones (concrete then sees two operands of one shape)."""
    ones = np.ones((1, graph.node(x).type.shape[-1]), dtype=np.int64)
    high = int(graph.node(column).annotation(Interval).hi)  # type: ignore[union-attr]
    broadcast = _product(graph, column, ones, at, high)
    difference = graph.add(SubOp(), [x, broadcast], result_type(SubOp(), graph, x, broadcast), at)
    return _bound(graph, difference, -spread, 0)


def _product(graph: Graph, x: ValueId, matrix: np.ndarray, at: Location, high: int) -> ValueId:
    constant = graph.add(ConstantOp.of(matrix), [], TensorType(matrix.shape, DType.I64), at)
    product = graph.add(MatMulOp(), [x, constant], result_type(MatMulOp(), graph, x, constant), at)
    return _bound(graph, product, 0, high)


def _lookup(graph: Graph, table: LookupOp, x: ValueId, at: Location, high: int) -> ValueId:
    return _bound(graph, graph.add(table, [x], result_type(table, graph, x), at), 0, high)


def _bound(graph: Graph, value: ValueId, low: int, high: int) -> ValueId:
    """Record the bounds `value` holds by construction, whatever the input: the
    integer passes size its width from them, not only from calibration (a sample
    with flat logits sums to C (2^n - 1), which calibration may never reach)."""
    node = graph.node(value).with_annotation(Interval(float(low), float(high)))
    graph.set_node(value, node)
    return value
