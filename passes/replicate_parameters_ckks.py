"""replicate-parameters-ckks: give trained weights a batch axis of 1, as the CKKS batch
layout holds them: replicated, the same number in every slot.

Applies to: a training step (`differentiate`) bound for CKKS. Requires: `annotate-secrecy`;
`parameters` names the step inputs that hold one value for the whole batch (the trained
weights and their velocities). Establishes: every secret value has a leading batch axis,
of the batch size B (one sample per slot) or 1 (replicated: one number in every slot);
the parameters' inputs have type (1, *shape) (the runtime adds and drops that axis), and
ops are rewritten to match:

- elementwise ops broadcast a replicated operand over the batch (a product of a sample's
  feature by a weight is a slotwise product of two ciphertexts);
- Gemm of samples by encrypted weights, x @ W: x (B, K, 1) * W (1, K, M), then a sum over
  K (additions of ciphertexts, no rotation);
- Gemm contracting the batch axis (a weight gradient x^T @ dy) and sums or means over the
  batch axis: products per sample, then a sum over axis 0 kept as (1, ...) -- the
  rotate-and-sum `ckks.slot_sum` once pack-slots-ckks lowers it;
- reductions, reshapes and transposes of replicated values shift their axes by one.

Any other op on a replicated value is a CompileError naming it. Ranges are annotated
again on the rewritten step, from the calibration samples (the parameters' arrays given
the same leading axis), so new values are bounded too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Function, Module, Node, ValueId
from fhec.ir.op import Op
from fhec.ir.ops.ckks import Replicated
from fhec.ir.ops.common import BinaryElementwise, UnaryElementwise
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, MulOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.shape import ReduceMeanOp, ReduceSumOp, ReshapeOp, TransposeOp
from fhec.passes.annotate_ranges import AnnotateRanges
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass
from fhec.passes.rewrite import add_constant, erase_if_dead


@register_pass
@dataclass(frozen=True, slots=True)
class ReplicateParametersCkks(Pass):
    name = "replicate-parameters-ckks"
    kind = PassKind.TRANSFORM
    parameters: str = ""  # comma-separated input names held replicated

    def run(self, module: Module, context: PassContext) -> None:
        names = {n.strip() for n in self.parameters.split(",") if n.strip()}
        if not names:
            raise FhecError(f"{self.name}: no parameters named")
        lifting = _Lifting(module.function)
        found = lifting.lift_inputs(names)
        missing = names - found
        if missing:
            raise FhecError(f"{self.name}: no secret input named {sorted(missing)[0]!r}")
        for value in module.graph.topological_order():
            if value in module.graph:
                lifting.visit(value)
        if context.calibration:
            context.calibration = [_lifted_sample(s, names) for s in context.calibration]
            AnnotateRanges().run(module, context)


def _lifted_sample(sample: Sample, names: set[str]) -> Sample:
    return {k: (np.asarray(v)[None] if k in names else v) for k, v in sample.items()}


class _Lifting:
    def __init__(self, function: Function) -> None:
        self.function = function
        self.graph = function.graph
        self.replicated: set[ValueId] = set()

    def lift_inputs(self, names: set[str]) -> set[str]:
        found = set()
        for value in self.function.inputs:
            node = self.graph.node(value)
            assert isinstance(node.op, InputOp)
            if node.op.input_name in names and node.type.secret:
                lifted = node.type.with_shape((1, *node.type.shape))
                op = InputOp(node.op.input_name, lifted)
                annotations = (*node.annotations, Replicated())
                self.graph.set_node(value, replace(node, op=op, type=lifted,
                                                   annotations=annotations))
                self.replicated.add(value)
                found.add(node.op.input_name)
        return found

    def visit(self, value: ValueId) -> None:
        node = self.graph.node(value)
        if not node.type.secret or isinstance(node.op, InputOp):
            return
        operands = self.graph.operands(value)
        rule = _rule(node.op)
        touches = any(o in self.replicated for o in operands)
        if rule is None:
            if touches:
                raise CompileError(
                    f"{node.op.name} on encrypted trained weights has no CKKS training form",
                    node.location,
                    hint="train the weights of Gemm layers (--trainable last), or train on "
                    "the reference backend",
                )
            return
        result = rule(self, node, operands)
        if result is None:
            return
        new, replicated = result
        if replicated:
            self.replicated.add(new)
        self.function.replace_uses(value, new)
        self.graph.remove(value)
        for operand in set(operands):
            erase_if_dead(self.function, operand)

    # -- building ------------------------------------------------------------------
    def secret(self, value: ValueId) -> bool:
        return self.graph.node(value).type.secret

    def batched(self, value: ValueId) -> bool:
        return self.secret(value) and value not in self.replicated

    def shape(self, value: ValueId) -> tuple[int, ...]:
        return self.graph.node(value).type.shape

    def emit(self, node: Node, op: Op, *operands: ValueId) -> ValueId:
        types = [self.graph.node(o).type for o in operands]
        return self.graph.add(op, operands, op.infer(types), node.location)

    def reshaped(self, node: Node, value: ValueId, shape: tuple[int, ...]) -> ValueId:
        if self.shape(value) == shape:
            return value
        producer = self.graph.node(value).op
        if isinstance(producer, ConstantOp):
            return add_constant(self.graph, producer.value.array.reshape(shape), node.location)
        return self.emit(node, ReshapeOp(shape), value)

    def to_rank(self, node: Node, value: ValueId, rank: int) -> ValueId:
        """`value` with leading axes of 1 up to `rank` (numpy's broadcasting, spelled out)."""
        shape = self.shape(value)
        return self.reshaped(node, value, (1,) * (rank - len(shape)) + shape)

    def fit_replicated(self, node: Node, value: ValueId, rank: int) -> ValueId:
        """A replicated value (1, *s) as the operand of a `rank`-dimensional batched op:
        its numpy broadcasting aligns s with the last axes, so the batch axis meets a 1."""
        shape = self.shape(value)[1:]
        if len(shape) < rank:
            return self.to_rank(node, value, rank)
        if len(shape) == rank and shape[0] == 1:
            return self.reshaped(node, value, shape)
        raise self.misfit(node, "broadcasts trained weights along the batch axis")

    def scaled(self, node: Node, value: ValueId, factor: float) -> ValueId:
        if factor == 1.0:
            return value
        dtype = self.graph.node(value).type.dtype.numpy
        constant = add_constant(self.graph, np.asarray(factor, dtype=dtype), node.location)
        return self.emit(node, MulOp(), value, constant)

    def batch_sum(self, node: Node, value: ValueId) -> ValueId:
        """The sum over axis 0 of a batched value, kept as (1, ...): replicated."""
        return self.emit(node, ReduceSumOp((0,), keepdims=True), value)

    def misfit(self, node: Node, why: str) -> CompileError:
        return CompileError(
            f"{node.op.name} {why}: the CKKS training layout keeps samples on axis 0 and "
            "trained weights replicated",
            node.location,
            hint="train the weights of Gemm layers (--trainable last)",
        )


Rule = Callable[[_Lifting, Node, Sequence[ValueId]], tuple[ValueId, bool] | None]


def _elementwise(lw: _Lifting, node: Node, operands: Sequence[ValueId]) -> tuple[ValueId, bool]:
    rank = node.type.rank
    replicated = not any(lw.batched(o) for o in operands)
    target = rank + 1 if replicated else rank
    moved = []
    for operand in operands:
        if lw.batched(operand):
            if len(lw.shape(operand)) != rank:
                raise lw.misfit(node, "broadcasts a batch of samples along another axis")
            moved.append(operand)
        elif operand in lw.replicated and not replicated:
            moved.append(lw.fit_replicated(node, operand, target))
        elif replicated:
            moved.append(lw.to_rank(node, operand, target))
        else:
            moved.append(operand)  # a public operand meets a batch: numpy aligns it
    return lw.emit(node, node.op, *moved), replicated


def _reduction(
    lw: _Lifting, node: Node, operands: Sequence[ValueId]
) -> tuple[ValueId, bool] | None:
    op = node.op
    assert isinstance(op, ReduceSumOp | ReduceMeanOp)
    (x,) = operands
    shape = lw.shape(x)
    axes = tuple(sorted(a % len(shape) for a in op.axes))
    if x in lw.replicated:
        shifted = tuple(a + 1 for a in axes)
        return lw.emit(node, type(op)(shifted, op.keepdims), x), True
    if 0 not in axes:
        return None  # per sample: pack-slots-ckks adds ciphertexts
    rest = tuple(a for a in axes if a)
    value = lw.emit(node, ReduceSumOp(rest, keepdims=True), x) if rest else x
    value = lw.batch_sum(node, value)
    if isinstance(op, ReduceMeanOp):
        value = lw.scaled(node, value, 1.0 / int(np.prod([shape[a] for a in axes])))
    return lw.reshaped(node, value, (1, *node.type.shape)), True


def _gemm(lw: _Lifting, node: Node, operands: Sequence[ValueId]) -> tuple[ValueId, bool] | None:
    op = node.op
    assert isinstance(op, GemmOp)
    a, b, *rest = operands
    bias = rest[0] if rest else None
    kinds = (lw.batched(a), b in lw.replicated)
    if kinds == (True, True) and not op.trans_a:
        product, replicated = _samples_times_weights(lw, node, a, b, op.trans_b), False
    elif lw.batched(a) and lw.batched(b) and op.trans_a and not op.trans_b:
        product, replicated = _batch_contraction(lw, node, a, b), True
    elif lw.batched(a) and not lw.secret(b) and bias is not None and bias in lw.replicated:
        plain = GemmOp(op.alpha, 1.0, op.trans_a, op.trans_b)
        product, replicated = lw.emit(node, plain, a, b), False
        return _with_bias(lw, node, product, bias, op.beta, replicated), False
    elif any(o in lw.replicated for o in operands) or (op.trans_a and lw.batched(a)):
        raise lw.misfit(node, "multiplies these operands in a way the layout cannot")
    else:
        return None  # samples times constant weights: pack-slots-ckks's matmul_plain
    product = lw.scaled(node, product, op.alpha)
    if bias is None:
        return product, replicated
    return _with_bias(lw, node, product, bias, op.beta, replicated), replicated


def _samples_times_weights(
    lw: _Lifting, node: Node, x: ValueId, weights: ValueId, transposed: bool
) -> ValueId:
    """x (B, K) @ W (K, M): x as (B, K, 1) times W as (1, K, M), summed over K."""
    samples, inner = lw.shape(x)
    if transposed:
        weights = lw.emit(node, TransposeOp((0, 2, 1)), weights)
    column = lw.reshaped(node, x, (samples, inner, 1))
    product = lw.emit(node, MulOp(), column, weights)
    return lw.emit(node, ReduceSumOp((1,), keepdims=False), product)


def _batch_contraction(lw: _Lifting, node: Node, a: ValueId, b: ValueId) -> ValueId:
    """a^T @ b for a (B, K), b (B, M): per sample a (K, 1) * b (1, M), summed over the
    batch into (1, K, M)."""
    samples, rows = lw.shape(a)
    columns = lw.shape(b)[1]
    left = lw.reshaped(node, a, (samples, rows, 1))
    right = lw.reshaped(node, b, (samples, 1, columns))
    product = lw.emit(node, MulOp(), left, right)
    return lw.reshaped(node, lw.batch_sum(node, product), (1, rows, columns))


def _with_bias(
    lw: _Lifting, node: Node, product: ValueId, bias: ValueId, beta: float, replicated: bool
) -> ValueId:
    rank = len(lw.shape(product))
    term = bias
    if bias in lw.replicated:
        term = lw.fit_replicated(node, bias, rank)
    elif replicated:
        term = lw.to_rank(node, bias, rank)
    return lw.emit(node, AddOp(), product, lw.scaled(node, term, beta))


def _layout(lw: _Lifting, node: Node, operands: Sequence[ValueId]) -> tuple[ValueId, bool] | None:
    (x,) = operands[:1]
    if x not in lw.replicated:
        return None
    if isinstance(node.op, ReshapeOp):
        return lw.emit(node, ReshapeOp((1, *node.op.shape)), x), True
    assert isinstance(node.op, TransposeOp)
    return lw.emit(node, TransposeOp((0, *(p + 1 for p in node.op.perm))), x), True


def _rule(op: Op) -> Rule | None:
    if isinstance(op, UnaryElementwise | BinaryElementwise):
        return _elementwise
    if isinstance(op, ReduceSumOp | ReduceMeanOp):
        return _reduction
    if isinstance(op, GemmOp):
        return _gemm
    if isinstance(op, ReshapeOp | TransposeOp):
        return _layout
    return None
