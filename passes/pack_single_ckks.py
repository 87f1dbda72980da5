"""The single-sample layout of pack-slots-ckks (`layout=single`, or `auto`'s choice).

Applies to: modules compiled for ONE sample (batch size 1) whose encrypted path is
Gemm / MatMul with constant weights (+ a constant bias), elementwise arithmetic
(expanded polynomials: ReLU, sigmoid, ... after `approximate-activations` and
`expand-polynomials-ckks`) and reshapes / float casts. Requires: `annotate-secrecy`.
Establishes: every secret value (1, ...) is one ciphertext, its numbers flattened into
slots 0..n-1, zeros up to the period P, repeated across all slots (`#ckks_single{period}`
on the secret inputs: P is the power of two >= every secret value's size, one period
for the whole module, so every layer's output is already laid out for the next with
no masking or re-replication); linear layers become `ckks.matvec_diagonal`
(Halevi-Shoup diagonals, baby-step giant-step: O(sqrt P) rotations), except a layer
that alone reads a secret input while P * P slots fit N = 8192: the client encrypts
that input stacked (P blocks, block k rotated by k: `#ckks_single{stacked = true}`) and
the layer is `ckks.matvec_stacked` (one product, log2 P rotations); the rest the
batch layout's elementwise ckks ops (the evaluator encodes their plaintexts as packed
vectors). A reshape or float cast moves nothing. Any other op on secret values
(Conv, pooling, reductions, transposes, concats: they move data between slots) is a
CompileError naming the node and pointing to `layout=batch`.

The cost model of `layout=auto` (`choose_layout`): the batch layout pays one
ciphertext per element of a sample whatever the number of samples, the single layout
one ciphertext per value and O(sqrt P) rotations per layer; so single is chosen when
the compiled batch size is 1 and every secret op has a single-layout form, batch
otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fhec.ir.errors import CompileError
from fhec.ir.graph import Function, Graph, Module, Node, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.linalg import GemmOp
from fhec.passes.annotate_states_ckks import annotate_states
from fhec.passes.approximate_activations import APPROXIMATED
from fhec.passes.pack_slots_ckks import (
    RULES,
    _hint,
    _is_float_cast,
    _Lowering,
    _product_bounds,
)

ELEMENTWISE = ("arith.add", "arith.sub", "arith.mul", "arith.div", "arith.neg")
LINEAR = ("linalg.gemm", "linalg.matmul")
STACKED_SLOTS = 4096  # N = 8192's slots
HINT = "use pack-slots-ckks{layout=batch}, which packs samples, not elements, in slots"


def choose_layout(function: Function) -> str:
    """`layout=auto`: single for one sample whose every secret op has a single form."""
    return "single" if _unsupported(function) is None else "batch"


def pack_single(module: Module, pass_name: str, scale_bits: int, plain_scale_bits: int) -> None:
    function = module.function
    found = _unsupported(function)
    if found is not None:
        node, reason = found
        hint = _hint(node.op.name) if node.op.name in APPROXIMATED else HINT
        raise CompileError(reason, node.location, hint=hint)
    period = _period(function)
    lowering = _SingleLowering(function, plain_scale_bits, period)
    for value in function.graph.topological_order():
        node = function.graph.node(value)
        if not node.type.secret:
            continue
        if isinstance(node.op, InputOp):
            state = ckks.CkksState(scale_bits, 0, 2)
            layout = ckks.SingleLayout(period)
            function.graph.set_node(value, node.with_annotation(state).with_annotation(layout))
        elif node.op.name in ELEMENTWISE + LINEAR:
            lowering.lower(value, node)
    _stack_first_layers(function, period)
    annotate_states(module, pass_name)


def _stack_first_layers(function: Function, period: int) -> None:
    """A secret input read only by a mat-vec goes stacked (the client encrypts its P
    rotations; `ckks.matvec_stacked`): log2 P rotations instead of about 2 sqrt(P),
    and one product instead of P, at the top level where rotations cost the most.
    Only while the P * P slots fit N = 8192 (a larger N would cost every op more)."""
    graph = function.graph
    if period * period > STACKED_SLOTS:
        return
    for value in function.inputs:
        users = graph.users(value)
        if not graph.node(value).type.secret or len(users) != 1:
            continue
        user = users[0][0]
        node = graph.node(user)
        if not isinstance(node.op, ckks.MatVecDiagonalOp) or graph.operands(user)[0] != value:
            continue
        graph.set_node(user, replace(node, op=ckks.MatVecStackedOp(period)))
        layout = ckks.SingleLayout(period, stacked=True)
        graph.set_node(value, graph.node(value).with_annotation(layout))


def _unsupported(function: Function) -> tuple[Node, str] | None:
    """The first secret node the single layout cannot compute, and why; None if none."""
    graph = function.graph
    for value in graph.topological_order():
        node = graph.node(value)
        if not node.type.secret:
            continue
        shape, name = node.type.shape, node.op.name
        if not shape or shape[0] != 1:
            return node, (f"the CKKS single-sample layout computes one sample, and "
                          f"{name} makes shape {shape}: compile with batch_size=1")
        if isinstance(node.op, InputOp):
            if node.annotation(ckks.Replicated) is not None:
                return node, "a replicated (trained) input has no single-sample layout"
            continue
        operands = graph.operands(value)
        if name in ELEMENTWISE:
            secret = [graph.node(o).type.shape for o in operands if graph.node(o).type.secret]
            if any(s != shape for s in secret):
                return node, (f"{name} broadcasts encrypted operands {secret} to {shape}; "
                              "the single-sample layout adds and multiplies equal shapes")
        elif name in LINEAR:
            if len(operands) > 2 and graph.node(operands[2]).type.secret:
                return node, f"{name} with an encrypted bias has no single-sample form"
        elif not (name == "tensor.reshape" or _is_float_cast(node.op)):
            return node, (f"{name} on encrypted values has no form in the CKKS single-sample "
                          "layout (one ciphertext per sample: only linear layers, elementwise "
                          "arithmetic and reshapes)")
    return None


def _period(function: Function) -> int:
    """The power of two >= every secret value's per-sample size (a linear layer's K and
    M included): one period serves every layer."""
    graph = function.graph
    sizes = [graph.node(v).type.size for v in graph if graph.node(v).type.secret]
    largest = max(sizes, default=1)
    return 1 << max(largest - 1, 0).bit_length()


def baby_steps(period: int) -> int:
    """b = 2^ceil(log2(P) / 2) >= sqrt(P): (b - 1) + (P / b - 1) rotations per layer."""
    return 1 << ((period.bit_length() - 1 + 1) // 2)


class _SingleLowering(_Lowering):
    def __init__(self, function: Function, plain_scale_bits: int, period: int) -> None:
        super().__init__(function, plain_scale_bits)
        self.period = period

    def lower(self, value: ValueId, node: Node) -> None:
        operands = self.graph.operands(value)
        if node.op.name in LINEAR:
            result = _matvec(self, node, operands)
        else:
            result = RULES[node.op.name](self, node, operands)
        self.take_over(value, node, operands, result)


def _matvec(lw: _SingleLowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    """Gemm / MatMul of the sample (1, K) by constant weights: `ckks.matvec_diagonal`,
    then the bias (beta * C) as a packed plaintext."""
    op = node.op
    x, w = operands[0], operands[1]
    trans_a = isinstance(op, GemmOp) and op.trans_a
    ranks = (lw.graph.node(x).type.rank, lw.graph.node(w).type.rank)
    if trans_a or not lw.secret(x) or lw.secret(w) or ranks != (2, 2):
        raise CompileError(
            f"{op.name} in the single-sample layout needs the encrypted sample (1, K) as its "
            "(untransposed) first operand and a constant matrix",
            node.location,
            hint="export the layer as x @ W (+ b) with x the activations",
        )
    weights = lw.constant_of(node, w, "the weights")
    if isinstance(op, GemmOp):
        weights = op.alpha * (weights.T if op.trans_b else weights)
    matrix = lw.constant(node, weights)
    matvec = ckks.MatVecDiagonalOp(lw.period, baby_steps(lw.period))
    if len(operands) == 2:
        return lw.emit(node, matvec, x, lw.encode(node, matrix))
    assert isinstance(op, GemmOp)
    bias = operands[2]
    bounds = _product_bounds(lw, node, bias, op.beta)
    product = lw.emit(node, matvec, x, lw.encode(node, matrix), bounds=bounds)
    if _is_zero(lw, bias):
        return product
    shift = lw.constant(node, op.beta * lw.constant_of(node, bias, "the bias"))
    return lw.emit(node, ckks.AddPlainOp(), product, lw.encode(node, shift))


def _is_zero(lw: _SingleLowering, value: ValueId) -> bool:
    producer = lw.graph.node(value).op
    return isinstance(producer, ConstantOp) and not np.any(producer.value.array)


def single_period(module: Module) -> int | None:
    """The period of a module in the single-sample layout; None for the batch layout."""
    graph = module.graph
    for value in module.function.inputs:
        found = graph.node(value).annotation(ckks.SingleLayout)
        if found is not None:
            return found.period
    return None


def single_layout_slots(graph: Graph, inputs: list[ValueId]) -> int:
    """The slots the single-sample layout needs (0 for the batch layout): the period, or
    its square for a stacked input (select-params-ckks picks N >= twice this)."""
    layouts = [graph.node(v).annotation(ckks.SingleLayout) for v in inputs]
    return max((s.period ** (2 if s.stacked else 1) for s in layouts if s is not None),
               default=0)
