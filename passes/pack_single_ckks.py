"""The single-sample layout of pack-slots-ckks (`layout=single`, or `auto`'s choice).

Applies to: modules compiled for ONE sample (batch size 1) whose encrypted path is
linear maps of one encrypted value with constant parameters (Gemm / MatMul, Conv,
AveragePool, Pad, Transpose, ReduceSum / ReduceMean, Gather, Concat with constants, a
decomposed MaxPool's gathers and +-1 products, ...), elementwise arithmetic (expanded
polynomials: ReLU, sigmoid, ... after `approximate-activations` and
`expand-polynomials-ckks`) and reshapes / float casts. Requires: `annotate-secrecy`.
Establishes: every secret value (1, ...) is one ciphertext, its numbers flattened into
slots 0..n-1, zeros up to the period P, repeated across all slots (`#ckks_single{period}`
on the secret inputs: P is the power of two >= every secret value's size, one period
for the whole module, so every layer's output is already laid out for the next with
no masking or re-replication). Every linear map becomes a matrix on the flattened
sample, probed from the op's own `evaluate` (the Toeplitz form of a convolution,
derived rather than written per op: passes/single_linear_ckks.py), chains of them with
only reshapes between fold into one matrix, and each is a `ckks.matvec_diagonal`
(Halevi-Shoup diagonals, baby-step giant-step: O(sqrt P) rotations) plus its shift as a
plaintext, except a layer that alone reads a secret input (through reshapes) while
P * P slots fit N = 8192: the client encrypts that input stacked (P blocks, block k
rotated by k: `#ckks_single{stacked = true}`) and the layer is `ckks.matvec_stacked`
(one product, log2 P rotations); the rest the batch layout's elementwise ckks ops (the
evaluator encodes their plaintexts as packed vectors). A reshape or float cast moves
nothing. An op reading two encrypted values other than elementwise on equal shapes
(a broadcast product, a concat of two), or not linear in its one encrypted operand, is
a CompileError naming the node.

`layout=auto` chooses between the layouts by their cost (passes/layout_cost_ckks.py).
"""

from __future__ import annotations

from dataclasses import replace

from fhec.ir.errors import CompileError
from fhec.ir.graph import Function, Graph, Module, Node, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.shape import ReshapeOp
from fhec.passes.annotate_states_ckks import annotate_states
from fhec.passes.approximate_activations import APPROXIMATED
from fhec.passes.pack_slots_ckks import (
    RULES,
    _hint,
    _is_float_cast,
    _is_zero,
    _Lowering,
    _product_bounds,
)
from fhec.passes.single_linear_ckks import (
    NOT_LINEAR,
    affine_map,
    fold_gemm_chains,
    gemm_map,
    to_gemm,
)

ELEMENTWISE = ("arith.add", "arith.sub", "arith.mul", "arith.div", "arith.neg")
LINEAR = ("linalg.gemm", "linalg.matmul")
STACKED_SLOTS = 4096  # N = 8192's slots
HINT = "use pack-slots-ckks{layout=batch}, which packs samples, not elements, in slots"


def pack_single(module: Module, pass_name: str, scale_bits: int, plain_scale_bits: int) -> None:
    function = module.function
    found = unsupported(function)
    if found is not None:
        node, reason = found
        # an activation not yet approximated, or a non-linear op: CKKS's own hints
        computable = node.op.name not in APPROXIMATED and NOT_LINEAR not in reason
        hint = HINT if computable else _hint(node.op.name)
        raise CompileError(reason, node.location, hint=hint)
    _to_matrices(function)
    period = layout_period(function)
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
    """A secret input read only by a mat-vec (through reshapes: a convolution's flatten)
    goes stacked (the client encrypts its P rotations; `ckks.matvec_stacked`): log2 P
    rotations instead of about 2 sqrt(P), and one product instead of P, at the top
    level where rotations cost the most. Only while the P * P slots fit N = 8192 (a
    larger N would cost every op more)."""
    graph = function.graph
    if period * period > STACKED_SLOTS:
        return
    for value in function.inputs:
        users = graph.users(value)
        if not graph.node(value).type.secret or len(users) != 1:
            continue
        user, operand = _through_reshapes(graph, users[0][0], value)
        node = graph.node(user)
        if not isinstance(node.op, ckks.MatVecDiagonalOp) or graph.operands(user)[0] != operand:
            continue
        graph.set_node(user, replace(node, op=ckks.MatVecStackedOp(period)))
        layout = ckks.SingleLayout(period, stacked=True)
        graph.set_node(value, graph.node(value).with_annotation(layout))


def _through_reshapes(graph: Graph, user: ValueId, value: ValueId) -> tuple[ValueId, ValueId]:
    """The first user past a chain of single-use reshapes (they move nothing, so a stacked
    input stays stacked through them), and the value it reads."""
    while isinstance(graph.node(user).op, ReshapeOp) and len(graph.users(user)) == 1:
        user, value = graph.users(user)[0][0], user
    return user, value


def unsupported(function: Function) -> tuple[Node, str] | None:
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
        reason = _why_not(graph, value, node)
        if reason is not None:
            return node, reason
    return None


def _why_not(graph: Graph, value: ValueId, node: Node) -> str | None:
    """Why the single layout cannot compute this secret node; None if it can."""
    operands, shape, name = graph.operands(value), node.type.shape, node.op.name
    if name in APPROXIMATED:
        return (f"{name} on encrypted values has no form in the CKKS single-sample layout "
                "before it is approximated")
    if is_linear_map(graph, value, node):
        found = affine_map(graph, value)
        return found if isinstance(found, str) else None
    if name in ELEMENTWISE:
        secret = [graph.node(o).type.shape for o in operands if graph.node(o).type.secret]
        if all(s == shape for s in secret):
            return None
        return (f"{name} broadcasts encrypted operands {secret} to {shape}; the "
                "single-sample layout adds and multiplies equal shapes")
    if name in LINEAR and len(operands) > 2 and graph.node(operands[2]).type.secret:
        return f"{name} with an encrypted bias has no single-sample form"
    return None  # gemm / matmul (refused in _matvec if misshapen), reshape, float cast


def is_linear_map(graph: Graph, value: ValueId, node: Node) -> bool:
    """Nodes computed as a matrix probed from the op (passes/single_linear_ckks.py):
    all but elementwise ops on equal shapes, the mat-vecs' own form, reshapes and float
    casts (they move nothing); elementwise ops broadcasting ONE encrypted operand."""
    name = node.op.name
    if name in ELEMENTWISE:
        secret = [graph.node(o).type.shape for o in graph.operands(value)
                  if graph.node(o).type.secret]
        return len(secret) == 1 and secret[0] != node.type.shape
    if name == "linalg.gemm" or (name == "linalg.matmul" and gemm_map(graph, value)):
        return False
    return not (name == "tensor.reshape" or _is_float_cast(node.op))


def _to_matrices(function: Function) -> None:
    """Every linear map of one encrypted value becomes a gemm by its matrix (between
    reshapes, which move nothing); chains of them with nothing between fold into one."""
    graph = function.graph
    for value in graph.topological_order():
        node = graph.node(value)
        if node.type.secret and not isinstance(node.op, InputOp) \
                and is_linear_map(graph, value, node):
            found = affine_map(graph, value)
            assert not isinstance(found, str), found  # unsupported() refused it first
            to_gemm(function, value, found)
    fold_gemm_chains(function)


def layout_period(function: Function) -> int:
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
