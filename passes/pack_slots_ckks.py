"""pack-slots-ckks: lay secret tensors out in CKKS slots and lower to the ckks dialect.

Applies to: modules whose secret values are polynomial in the inputs (after
`approximate-activations` and `expand-polynomials-ckks`). Requires: `annotate-secrecy`.
`layout=single` packs one sample per ciphertext (passes/pack_single_ckks.py, whose
docstring says what it establishes); `layout=auto` picks the layout whose estimated
time for a request of `samples` samples is lower (passes/layout_cost_ckks.py), batch
where some secret op has no single-layout form.
Establishes, for `layout=batch` (the default): every secret value keeps the
batch axis as axis 0 (one sample per slot: each element of a sample is one
ciphertext), or has 1 there (replicated: one number in every slot, as trained weights
are after `replicate-parameters-ckks`), and is computed by a ckks op or a layout op
(reshape, transpose, concat, gather, float cast) that moves ciphertexts without mixing
samples. Sums over per-sample axes become `ckks.reduce_add`; sums over the batch axis
`ckks.slot_sum` (rotations), on an operand masked to the samples' slots unless its
slots past the samples are known to hold zeros. Linear
layers become `ckks.matmul_plain` (sums of ciphertext-times-scalar products, no
rotations), and so do convolutions and average pooling (the product by their
Toeplitz matrix on each sample's flattened elements, between two reshapes); a
constant or public operand meets a ciphertext through `ckks.encode`, at scale
2**plain_scale_bits (0: as `scale_bits`) and level 0 for now (the scale and level
passes adjust them). Secret inputs get #ckks{scale_bits, level = 0, size = 2}. Any
other op on secret values is a CompileError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.annotation import Annotation
from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Function, Module, Node, ValueId
from fhec.ir.interval import DotMagnitude, Interval
from fhec.ir.op import Op
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.shape import ReduceMeanOp, ReduceSumOp, ReshapeOp
from fhec.passes.annotate_states_ckks import annotate_states
from fhec.passes.approximate_activations import APPROXIMATED
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import add_constant, erase_if_dead

LAYOUTS = ("batch", "single", "auto")


@register_pass
@dataclass(frozen=True, slots=True)
class PackSlotsCkks(Pass):
    name = "pack-slots-ckks"
    kind = PassKind.TRANSFORM
    layout: str = "batch"
    scale_bits: int = 40  # inputs' scale, and the waterline of insert-rescale-ckks
    plain_scale_bits: int = 0  # scale of plaintext factors; 0: scale_bits
    samples: int = 1  # the samples of one request, which layout=auto's cost model prices

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise FhecError(
                f"pack-slots-ckks: layout {self.layout!r} is not implemented",
                hint=f"use one of: {', '.join(LAYOUTS)}",
            )
        if self.samples < 1:
            raise FhecError(f"pack-slots-ckks: samples must be at least 1, got {self.samples}")
        if not 20 <= self.scale_bits <= 59:
            raise FhecError(f"pack-slots-ckks: scale_bits must be in 20..59, got {self.scale_bits}")
        if self.plain_scale_bits and not 10 <= self.plain_scale_bits <= 59:
            raise FhecError(
                "pack-slots-ckks: plain_scale_bits must be 0 or in 10..59, "
                f"got {self.plain_scale_bits}"
            )

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        if self.layout != "batch":  # the single-sample layout: passes/pack_single_ckks.py
            from fhec.passes.layout_cost_ckks import choose_layout
            from fhec.passes.pack_single_ckks import pack_single

            layout, costs = self.layout, None
            if layout == "auto":
                layout, costs = choose_layout(function, self.samples)
            context.notes[self.name] = f"layout {layout}" + (
                f" (estimated {costs.single:.3g} ms single, {costs.batch:.3g} ms batch for "
                f"{self.samples} samples)" if costs is not None else "")
            if layout == "single":
                pack_single(module, self.name, self.scale_bits,
                            self.plain_scale_bits or self.scale_bits)
                return
        lowering = _Lowering(function, self.plain_scale_bits or self.scale_bits)
        for value in function.graph.topological_order():
            node = function.graph.node(value)
            if not node.type.secret:
                continue
            if isinstance(node.op, InputOp):
                lowering.check_batch(node)
                if node.annotation(ckks.Replicated) is None:
                    lowering.padded.add(value)
                state = ckks.CkksState(self.scale_bits, 0, 2)
                function.graph.set_node(value, node.with_annotation(state))
                continue
            lowering.lower(value, node)
        annotate_states(module, self.name)


class _Lowering:
    def __init__(self, function: Function, plain_scale_bits: int) -> None:
        self.function = function
        self.graph = function.graph
        self.plain_scale_bits = plain_scale_bits
        self.batch = _batch_size(function)
        # Secret values whose slots past the samples hold zeros (encrypted inputs, and
        # what products and sums of them keep so): a sum over the batch needs no mask.
        self.padded: set[ValueId] = set()

    def check_batch(self, node: Node) -> None:
        """Every secret value is (B, ...) with the inputs' B (samples stay in their
        slots), or (1, ...) for replicated values (trained weights, sums over the batch)."""
        shape = node.type.shape
        if isinstance(node.op, InputOp) and not shape:
            raise CompileError(
                "a scalar secret input has no batch axis to pack into slots",
                node.location,
                hint="give the input a leading batch axis",
            )
        if not shape or shape[0] not in (self.batch, 1):
            raise CompileError(
                f"the CKKS batch layout keeps the batch axis (axis 0, {self.batch} samples) on "
                f"every encrypted value, and {node.op.name} makes shape {shape}",
                node.location,
                hint="only ops that work sample by sample can run on encrypted batches",
            )

    def lower(self, value: ValueId, node: Node) -> None:
        rule = RULES.get(node.op.name)
        if rule is None:
            if node.op.name in ckks.LAYOUT_OPS and (
                node.op.name != "tensor.cast" or _is_float_cast(node.op)
            ):
                self.check_batch(node)
                if node.op.name != "tensor.cast":  # a cast moves nothing
                    self.check_layout(value, node)
                if all(o in self.padded for o in self.graph.operands(value) if self.secret(o)):
                    self.padded.add(value)
                return
            raise CompileError(
                f"{node.op.name} on encrypted values has no CKKS form",
                node.location,
                hint=_hint(node.op.name),
            )
        operands = self.graph.operands(value)
        keeps_padding = _keeps_padding(self, node, operands)
        result = rule(self, node, operands)
        if keeps_padding:
            self.padded.add(result)
        self.check_batch(self.graph.node(result))
        self.take_over(value, node, operands, result)

    def take_over(
        self, value: ValueId, node: Node, operands: tuple[ValueId, ...], result: ValueId
    ) -> None:
        """`result` (the lowered op) in place of `value`: its annotations but #ckks (and
        #dot, which stays only on a product), its uses; operands no one reads any more
        are erased."""
        annotations = tuple(a for a in node.annotations if a.key not in ("ckks", "dot"))
        kept = self.graph.node(result).annotation(DotMagnitude)
        annotations += (kept,) if kept is not None else ()
        self.graph.set_node(result, replace(self.graph.node(result), annotations=annotations))
        self.function.replace_uses(value, result)
        self.graph.remove(value)
        for operand in operands:
            erase_if_dead(self.function, operand)

    # -- building ------------------------------------------------------------------
    def emit(
        self, node: Node, op: Op, *operands: ValueId, bounds: Interval | None = None
    ) -> ValueId:
        types = [self.graph.node(o).type for o in operands]
        annotations: tuple[Annotation, ...] = (bounds,) if bounds is not None else ()
        dot = node.annotation(DotMagnitude)
        if isinstance(op, ckks.MatMulPlainOp) and dot is not None:  # the sums it stands for
            annotations += (dot,)
        return self.graph.add(op, operands, op.infer(types), node.location, annotations)

    def encode(self, node: Node, public: ValueId) -> ValueId:
        producer = self.graph.node(public)
        bounds = (
            Interval.of(producer.op.value.array)
            if isinstance(producer.op, ConstantOp)
            else producer.annotation(Interval)
        )
        return self.emit(node, ckks.EncodeOp(self.plain_scale_bits, 0), public, bounds=bounds)

    def constant(self, node: Node, array: np.ndarray) -> ValueId:
        return add_constant(
            self.graph, np.asarray(array, dtype=node.type.dtype.numpy), node.location
        )

    def constant_of(self, node: Node, value: ValueId, what: str) -> np.ndarray:
        producer = self.graph.node(value).op
        if not isinstance(producer, ConstantOp):
            raise CompileError(
                f"{node.op.name} on encrypted values needs {what} to be a constant", node.location
            )
        return producer.value.array.astype(np.float64)

    def secret(self, value: ValueId) -> bool:
        return self.graph.node(value).type.secret

    def check_layout(self, value: ValueId, node: Node) -> None:
        """A layout op must map each sample's elements to the same sample: run it on
        element ids (sample * stride + element + 1) and check the sample of each result."""
        operands = self.graph.operands(value)
        ids, offset, stride = [], 0, 1 + sum(self.graph.node(o).type.size for o in operands)
        for operand in operands:
            kind = self.graph.node(operand)
            if not kind.type.secret:
                if (
                    node.op.name == "tensor.gather"
                    and operand == operands[-1]
                    and isinstance(kind.op, ConstantOp)
                ):
                    ids.append(kind.op.value.array)
                    continue
                raise CompileError(
                    f"{node.op.name} mixing encrypted and public values is not supported",
                    node.location,
                )
            shape = kind.type.shape
            per_sample = int(np.prod(shape[1:], dtype=np.int64))
            rows = np.arange(shape[0], dtype=np.int64)[:, None] * stride
            ids.append((rows + offset + 1 + np.arange(per_sample)[None, :]).reshape(shape))
            offset += per_sample
        moved = np.asarray(node.op.evaluate(ids)).astype(np.int64)
        samples = moved // stride
        expected = (
            np.arange(moved.shape[0]).reshape((-1,) + (1,) * (moved.ndim - 1))
            if moved.ndim
            else None
        )
        if expected is None or np.any(moved % stride == 0) or np.any(samples != expected):
            raise CompileError(
                f"{node.op.name} moves elements across samples; the CKKS batch layout keeps "
                "each sample in its slot",
                node.location,
            )


def _is_float_cast(op: Op) -> bool:
    return op.name == "tensor.cast" and str(getattr(op, "to", "")) in ("f32", "f64")


def _hint(name: str) -> str:
    if name in APPROXIMATED:
        return "run approximate-activations first (with calibration data)"
    return (
        "CKKS computes additions and multiplications (and polynomials of them); compute this op "
        "on the client after decryption, or replace it in the model"
    )


# -- lowering rules, by op name -----------------------------------------------------
Rule = Callable[[_Lowering, Node, tuple[ValueId, ...]], ValueId]


def _add(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    x, y = operands
    if lw.secret(x) and lw.secret(y):
        return lw.emit(node, ckks.AddOp(), x, y)
    ct, pt = (x, y) if lw.secret(x) else (y, x)
    return lw.emit(node, ckks.AddPlainOp(), ct, lw.encode(node, pt))


def _sub(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    x, y = operands
    if lw.secret(x) and lw.secret(y):
        return lw.emit(node, ckks.SubOp(), x, y)
    if lw.secret(x):
        return lw.emit(node, ckks.SubPlainOp(), x, lw.encode(node, y))
    negated = lw.emit(node, ckks.NegateOp(), y)  # p - y = -y + p
    return lw.emit(node, ckks.AddPlainOp(), negated, lw.encode(node, x))


def _mul(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    x, y = operands
    if lw.secret(x) and lw.secret(y):
        return lw.emit(node, ckks.MulOp(), x, y)
    ct, pt = (x, y) if lw.secret(x) else (y, x)
    return lw.emit(node, ckks.MulPlainOp(), ct, lw.encode(node, pt))


def _div(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    x, y = operands
    if lw.secret(y):
        raise CompileError(
            "dividing by an encrypted value has no CKKS form",
            node.location,
            hint="divide by a constant, or compute the division on the client",
        )
    inverse = lw.constant(node, 1.0 / lw.constant_of(node, y, "the divisor"))
    return lw.emit(node, ckks.MulPlainOp(), x, lw.encode(node, inverse))


def _neg(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    return lw.emit(node, ckks.NegateOp(), operands[0])


def _gemm(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    op = node.op
    assert isinstance(op, GemmOp)
    if op.trans_a or not lw.secret(operands[0]) or lw.secret(operands[1]):
        raise CompileError(
            "Gemm on encrypted values needs the encrypted batch as its (untransposed) first "
            "operand and constant weights",
            node.location,
            hint="export the layer as x @ W (+ b) with x the activations",
        )
    weights = lw.constant_of(node, operands[1], "the weights")
    matrix = lw.constant(node, op.alpha * (weights.T if op.trans_b else weights))
    if len(operands) == 2:
        return lw.emit(node, ckks.MatMulPlainOp(), operands[0], lw.encode(node, matrix))
    bias = operands[2]
    bounds = _product_bounds(lw, node, bias, op.beta)
    product = lw.emit(
        node, ckks.MatMulPlainOp(), operands[0], lw.encode(node, matrix), bounds=bounds
    )
    if lw.secret(bias):
        scaled = (
            bias
            if op.beta == 1.0
            else lw.emit(
                node,
                ckks.MulPlainOp(),
                bias,
                lw.encode(node, lw.constant(node, np.asarray(op.beta))),
            )
        )
        return lw.emit(node, ckks.AddOp(), product, scaled)
    shift = lw.constant(node, op.beta * lw.constant_of(node, bias, "the bias"))
    return lw.emit(node, ckks.AddPlainOp(), product, lw.encode(node, shift))


def _product_bounds(lw: _Lowering, node: Node, bias: ValueId, beta: float) -> Interval | None:
    """Bounds of x @ W alone: the layer's range less its bias (for parameter selection)."""
    whole, bias_node = node.annotation(Interval), lw.graph.node(bias)
    shift = bias_node.annotation(Interval)
    if isinstance(bias_node.op, ConstantOp):
        shift = Interval.of(beta * bias_node.op.value.array.astype(np.float64))
    if whole is None or shift is None:
        return None
    return whole - shift


def _matmul(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    x, w = operands
    rank = lw.graph.node(w).type.rank
    if not lw.secret(x) or lw.secret(w) or rank != 2 or lw.graph.node(x).type.rank < 2:
        raise CompileError(
            "MatMul on encrypted values needs encrypted activations (batch first) times a "
            "constant matrix",
            node.location,
        )
    matrix = lw.constant(node, lw.constant_of(node, w, "the weights"))
    return lw.emit(node, ckks.MatMulPlainOp(), x, lw.encode(node, matrix))


def _linear_map(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    """A linear op of one encrypted operand and constant parameters (Conv, AveragePool)
    as a matrix product on each sample's flattened elements: its matrix (a convolution's
    Toeplitz matrix) is the op run on the unit vectors, its offset (a bias) the op at 0.
    reshape -> matmul_plain (zero weights cost nothing) -> add_plain -> reshape."""
    x, *rest = operands
    if not lw.secret(x) or any(lw.secret(o) for o in rest):
        raise CompileError(
            f"{node.op.name} on encrypted values needs the encrypted batch as its first "
            "operand and constant weights",
            node.location,
        )
    params = [lw.constant_of(node, o, "its weights") for o in rest]
    shape_in, shape_out = lw.graph.node(x).type.shape, node.type.shape
    inner = int(np.prod(shape_in[1:], dtype=np.int64))
    outer = int(np.prod(shape_out[1:], dtype=np.int64))
    offset = np.asarray(node.op.evaluate([np.zeros((1, *shape_in[1:])), *params])).reshape(outer)
    basis = np.eye(inner).reshape((inner, *shape_in[1:]))
    matrix = np.asarray(node.op.evaluate([basis, *params])).reshape(inner, outer) - offset
    known = lw.graph.node(x).annotation(Interval)
    flat = lw.emit(node, ReshapeOp((shape_in[0], inner)), x, bounds=known)
    whole = node.annotation(Interval)
    shift = Interval.of(offset)
    product = lw.emit(
        node,
        ckks.MatMulPlainOp(),
        flat,
        lw.encode(node, lw.constant(node, matrix)),
        bounds=None if whole is None else whole - shift,
    )
    if np.any(offset):
        offset_value = lw.constant(node, offset)
        product = lw.emit(
            node, ckks.AddPlainOp(), product, lw.encode(node, offset_value), bounds=whole
        )
    return lw.emit(node, ReshapeOp(shape_out), product, bounds=whole)


def _reduce(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> ValueId:
    """Sums (means) over per-sample axes add ciphertexts; over the batch axis they
    rotate and sum the slots (`ckks.slot_sum`, on an operand masked to the samples'
    slots unless those past the samples already hold zeros), leaving (1, ...)."""
    op = node.op
    assert isinstance(op, ReduceSumOp | ReduceMeanOp)
    (x,) = operands
    shape = lw.graph.node(x).type.shape
    axes = tuple(sorted(a % len(shape) for a in op.axes))
    bounds = node.annotation(Interval)
    total, count = x, int(np.prod([shape[a] for a in axes]))
    inner = tuple(a for a in axes if a)
    if inner:
        total = lw.emit(node, ckks.ReduceAddOp(inner, keepdims=True), total)
    if 0 in axes:
        if x not in lw.padded:
            mask = lw.constant(node, np.ones((shape[0],) + (1,) * (len(shape) - 1)))
            exact = ckks.EncodeSamplesOp(lw.plain_scale_bits, 0)
            encoded = lw.emit(node, exact, mask, bounds=Interval(1.0, 1.0))
            total = lw.emit(node, ckks.MulPlainOp(), total, encoded)
        total = lw.emit(node, ckks.SlotSumOp(), total)
    if isinstance(op, ReduceMeanOp) and count != 1:
        factor = lw.constant(node, np.asarray(1.0 / count))
        total = lw.emit(node, ckks.MulPlainOp(), total, lw.encode(node, factor))
    if lw.graph.node(total).type.shape != node.type.shape:
        total = lw.emit(node, ReshapeOp(node.type.shape), total, bounds=bounds)
    return total


def _keeps_padding(lw: _Lowering, node: Node, operands: tuple[ValueId, ...]) -> bool:
    """Whether `node`'s result holds zeros past the samples, as its operands do: products
    keep the zeros of either factor, sums those of every term; constants added fill
    every slot, and so do replicated values and sums over the batch."""
    secret = [o for o in operands if lw.secret(o)]
    padded = [o in lw.padded for o in secret]
    name = node.op.name
    if name == "arith.mul":
        return any(padded)
    if name in ("arith.div", "arith.neg"):
        return padded[0]
    if name in ("arith.add", "arith.sub"):
        return all(padded) and len(secret) == len(operands)
    if name in ("linalg.gemm", "linalg.matmul"):
        bias = operands[2] if len(operands) > 2 else None
        return padded[0] and (bias is None or _is_zero(lw, bias))
    if name in ("tensor.reduce_sum", "tensor.reduce_mean"):
        rank = lw.graph.node(operands[0]).type.rank
        return padded[0] and 0 not in {a % rank for a in getattr(node.op, "axes", ())}
    return False  # conv / pool offsets, anything else: assume every slot is written


def _is_zero(lw: _Lowering, value: ValueId) -> bool:
    producer = lw.graph.node(value).op
    return isinstance(producer, ConstantOp) and not np.any(producer.value.array)


def _batch_size(function: Function) -> int:
    """The batch B: the longest leading axis among the secret inputs (replicated ones
    have 1)."""
    graph = function.graph
    leading = [graph.node(v).type.shape[0] for v in function.inputs
               if graph.node(v).type.secret and graph.node(v).type.shape]
    return max(leading, default=1)


RULES: dict[str, Rule] = {
    "tensor.reduce_sum": _reduce,
    "tensor.reduce_mean": _reduce,
    "linalg.conv": _linear_map,
    "nn.avg_pool": _linear_map,
    "arith.add": _add,
    "arith.sub": _sub,
    "arith.mul": _mul,
    "arith.div": _div,
    "arith.neg": _neg,
    "linalg.gemm": _gemm,
    "linalg.matmul": _matmul,
}
