"""decompose-max-softmax-ckks: MaxPool, Softmax and LogSoftmax on encrypted values in the
middle of a model become ops that CKKS computes once approximated.

Applies to: secret `nn.max_pool`, `nn.softmax` and `nn.log_softmax` (last axis) left
after `split-epilogue-ckks` (a classifier's final softmax stays with the client). Requires:
`annotate-secrecy`, `annotate-ranges`. Establishes: none of them is left; each became,
at its location:

- max pool: each sample flattened, every window tap gathered side by side, and a
  pairwise tree of max(a, b) = b + relu(a - b), one level at a time: the differences of
  a level as one product by a +-1 matrix (`linalg.matmul`: the error bound then
  carries both operands' errors into the ReLU), one ReLU for all of them, then
  reshaped back. Taps in the pads repeat a real tap of their window, and an odd block
  out pairs with itself (max(a, a) = a), so pads still never win. `approximate-activations`
  turns each ReLU into a composite sign polynomial or a Chebyshev series.
- softmax: exp(x - c) with c the calibrated maximum of x (softmax does not change
  under a shift, and exp then stays in (0, 1]), the row sums as a product by a matrix of
  ones (every element gets its row's sum), their reciprocal (`arith.pow` -1, a
  polynomial on the calibrated range of the sums), and the product; log-softmax
  x - log(sums) - c, the log a polynomial on that range.

Every new value carries #range: calibrated through the reference interpreter when the
context holds calibration samples, from the ops' interval rules otherwise -- the
approximations are fitted on these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.errors import CompileError
from fhec.ir.graph import Function, Module, Node, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.elementwise import AddOp, ExpOp, LogOp, MulOp, PowOp, ReluOp, SubOp
from fhec.ir.ops.linalg import MatMulOp, sliding_windows, window_output_shape
from fhec.ir.ops.nn import LogSoftmaxOp, MaxPoolOp, SoftmaxOp
from fhec.ir.ops.shape import GatherOp, ReshapeOp
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass
from fhec.passes.rewrite import add_constant, operand_bounds


@register_pass
@dataclass(frozen=True, slots=True)
class DecomposeMaxSoftmaxCkks(Pass):
    name = "decompose-max-softmax-ckks"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        created: set[ValueId] = set()
        for value in function.graph.topological_order():
            node = function.graph.node(value)
            if not node.type.secret or not isinstance(
                node.op, MaxPoolOp | SoftmaxOp | LogSoftmaxOp
            ):
                continue
            builder = _Builder(function, node, created)
            x = function.graph.operands(value)[0]
            if isinstance(node.op, MaxPoolOp):
                result = _max_pool(builder, node.op, x)
            else:
                result = _softmax(builder, node, x)
            function.replace_uses(value, result)
            function.graph.remove(value)
        if created:
            _annotate_ranges(module, created, context.calibration)


class _Builder:
    """Adds ops at one node's location, remembering what it made."""

    def __init__(self, function: Function, node: Node, created: set[ValueId]) -> None:
        self.graph, self.location, self.created = function.graph, node.location, created
        self.dtype = node.type.dtype

    def op(self, op: Op, *operands: ValueId) -> ValueId:
        types = [self.graph.node(o).type for o in operands]
        value = self.graph.add(op, operands, op.infer(types), self.location)
        self.created.add(value)
        return value

    def constant(self, array: np.ndarray) -> ValueId:
        return add_constant(self.graph, np.asarray(array, dtype=self.dtype.numpy), self.location)

    def index(self, array: np.ndarray) -> ValueId:
        return add_constant(self.graph, np.asarray(array, dtype=np.int64), self.location)


def _max_pool(builder: _Builder, op: MaxPoolOp, x: ValueId) -> ValueId:
    """All taps side by side, (N, taps * outputs) tap-major, then one tree level at a
    time: every pair's max through one ReLU, so all of a level's values share one
    polynomial (and one CKKS state)."""
    shape = builder.graph.node(x).type.shape
    flat = builder.op(ReshapeOp((shape[0], int(np.prod(shape[1:])))), x)
    taps = _tap_indices(op, shape)
    outputs = len(taps[0])
    level = builder.op(GatherOp(axis=1), flat, builder.index(np.concatenate(taps)))
    count = len(taps)
    while count > 1:
        if count % 2:  # the last block pairs with itself: max(a, a) = a
            blocks = np.concatenate([np.arange(count * outputs), _block(count - 1, outputs)])
            level = builder.op(GatherOp(axis=1), level, builder.index(blocks))
            count += 1
        level = _max_of_pairs(builder, level, count // 2, outputs)
        count //= 2
    out = window_output_shape(shape[2:], op.kernel, op.strides, op.pads, op.dilations, op.ceil_mode)
    return builder.op(ReshapeOp((*shape[:2], *out)), level)


def _block(index: int, width: int) -> np.ndarray:
    return np.arange(index * width, (index + 1) * width)


def _max_of_pairs(builder: _Builder, level: ValueId, pairs: int, width: int) -> ValueId:
    """Blocks 2j and 2j+1 of `level` -> their max, block j: b + relu(a - b), with a - b
    as one product by a +-1 matrix (its error then counts both operands')."""
    difference = np.zeros((2 * pairs * width, pairs * width))
    for pair in range(pairs):
        difference[_block(2 * pair, width), _block(pair, width)] = 1.0
        difference[_block(2 * pair + 1, width), _block(pair, width)] = -1.0
    gap = builder.op(MatMulOp(), level, builder.constant(difference))
    odd_blocks = np.concatenate([_block(2 * pair + 1, width) for pair in range(pairs)])
    seconds = builder.op(GatherOp(axis=1), level, builder.index(odd_blocks))
    return builder.op(AddOp(), seconds, builder.op(ReluOp(), gap))


def _tap_indices(op: MaxPoolOp, shape: Sequence[int]) -> list[np.ndarray]:
    """For each tap of the window, the flat index (in a sample) it reads at every output;
    a tap in the pads reads its window's first real tap instead."""
    out = window_output_shape(shape[2:], op.kernel, op.strides, op.pads, op.dilations, op.ceil_mode)
    ids = np.arange(int(np.prod(shape[1:])), dtype=np.float64).reshape((1, *shape[1:]))
    windows = sliding_windows(ids, op.kernel, op.strides, op.pads, op.dilations, out, -1, -1)
    table = windows.reshape(-1, int(np.prod(op.kernel))).astype(np.int64)  # outputs x taps
    first = table[np.arange(len(table)), np.argmax(table >= 0, axis=1)]
    table = np.where(table >= 0, table, first[:, None])
    return [np.ascontiguousarray(table[:, tap]) for tap in range(table.shape[1])]


def _softmax(builder: _Builder, node: Node, x: ValueId) -> ValueId:
    """softmax = e / sum(e), log_softmax = x - c - log(sum(e)), e = exp(x - c)."""
    op = node.op
    assert isinstance(op, SoftmaxOp | LogSoftmaxOp)
    rank = node.type.rank
    known = builder.graph.node(x).annotation(Interval)
    what = "softmax" if isinstance(op, SoftmaxOp) else "log_softmax"
    if op.axis % rank != rank - 1:
        raise CompileError(
            f"{what} over axis {op.axis} of an encrypted {node.type.shape} tensor: only the "
            "last axis is supported in the middle of a model",
            node.location,
            hint="transpose the axis last before the Softmax, or move it to the model's end",
        )
    if known is None or not known.is_finite():
        raise CompileError(
            f"{what} on encrypted values needs its input's range (exp is approximated on it)",
            node.location,
            hint="give calibration data (fhec compile --calibration DATA.npz)",
        )
    top = builder.constant(np.asarray(known.hi))
    exps = builder.op(ExpOp(), builder.op(SubOp(), x, top))
    size = node.type.shape[-1]
    sums = builder.op(MatMulOp(), exps, builder.constant(np.ones((size, size))))
    if isinstance(op, SoftmaxOp):
        return builder.op(MulOp(), exps, builder.op(PowOp(exponent=-1.0), sums))
    # x - log(sums) - c, not (x - c) - log(sums): the value x - c that exp reads belongs
    # to exp's polynomial (the error bound counts its input's error at exp's end only).
    return builder.op(SubOp(), builder.op(SubOp(), x, builder.op(LogOp(), sums)), top)


def _annotate_ranges(module: Module, created: set[ValueId], samples: Sequence[Sample]) -> None:
    """#range on the new values: their hull over the calibration samples, or their
    interval rules' bounds (in order, from their operands') without samples."""
    graph = module.graph
    if not samples:
        for value in graph.topological_order():
            bounds = _interval_rule(module, value) if value in created else None
            if bounds is not None:
                graph.set_node(value, graph.node(value).with_annotation(bounds))
        return
    seen: dict[ValueId, list[Interval]] = {}
    for sample in samples:
        for value, array in evaluate_all(module, sample).items():
            if value in created:
                seen.setdefault(value, []).append(Interval.of(np.asarray(array)))
    for value, items in seen.items():
        graph.set_node(value, graph.node(value).with_annotation(Interval.hull(items)))


def _interval_rule(module: Module, value: ValueId) -> Interval | None:
    graph = module.graph
    operands = graph.operands(value)
    known = operand_bounds(graph, operands)
    if known is None:
        return None
    types = [graph.node(o).type for o in operands]
    return graph.node(value).op.interval_with_types(*known, types)
