"""Lowering the training step IR onto the fixed-point program (training_fixed.py), one
rule per op kind; anything else raises a CompileError naming the node.

- input: the client quantizes it to `bits` bits, symmetric (unsigned when its calibrated
  range is non-negative; the weights always signed), on its calibrated range (weights:
  across the run, their updates included).
- constant scalar factor (the 1/B of a mean, the learning rate): folded into the scale.
- add / sub: on one scale; an integer scale ratio is a clear multiplication (no
  bootstrap), any other ratio a lookup that rescales the coarser operand.
- gemm by a frozen layer's constant weights: the weights quantized to `bits` bits, an
  encrypted-by-clear product; its constant bias a clear addition.
- mul and gemm of two encrypted values: 4ab = (a + b)^2 - (a - b)^2, each square one
  lookup of `lookup_bits` bits (concrete's own enc x enc product squares at the
  product's width, tens of times slower to key and run); operands wider than half the
  lookup are narrowed first by a lookup. The sums over the batch are encrypted sums.
- elementwise functions (sigmoid, softplus, ...): one lookup onto `bits` bits of the
  output's calibrated range.
- reduce_sum / reduce_mean: encrypted sums (the mean's 1/n folded into the scale).
- the new weights: one lookup back onto their input's quantizer (clipped to it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np

from fhec.backends.tfhe.training_fixed import (
    Fixed,
    Kernel,
    Lowering,
    Program,
    StepProgram,
    fit_quantizer,
    product_kernel,
)
from fhec.ir.errors import CompileError
from fhec.ir.graph import Module, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.op import Op
from fhec.ir.ops.common import UnaryElementwise
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, MulOp, NegOp, SubOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.shape import ReduceMeanOp, ReduceSumOp

Arrays = dict[str, np.ndarray]
Lowered: TypeAlias = Fixed | np.ndarray
# Two more samples than the calibration's: the first batch with every weight at the high
# end of its quantizer, then at the low end. The circuit's widths (and the rounding
# before each lookup) then hold any weights the quantizers can encode, not only those of
# the rehearsal: the quantized run drifts from it, and a weight that the rehearsal kept
# positive may turn negative.
EXTREMES = (1, -1)
Rule: TypeAlias = Callable[[Lowering, ValueId, Any, list[Lowered]], Lowered]


def lower_step(module: Module, calibration: Sequence[Arrays], weights: Sequence[str],
               results: Sequence[str], bits: int, lookup_bits: int) -> StepProgram:
    """The fixed-point program of `module` returning `results` (output names)."""
    floats = [evaluate_all(module, sample) for sample in calibration]
    lowering = Lowering(module, bits, lookup_bits, tuple(weights), floats,
                        Program(len(calibration) + len(EXTREMES)))
    graph = module.graph
    needed = _needed(module, results)
    for value in graph.topological_order():
        if value in needed:
            lowering.lowered[value] = _lower(lowering, value, calibration)
    outputs = dict(module.function.outputs)
    out_slots, out_scales = [], []
    for name in results:
        fixed = lowering.lowered[outputs[name]]
        assert isinstance(fixed, Fixed)  # a step's outputs depend on its inputs
        if name in lowering.quantizers:  # a new weight: back onto its input's quantizer
            quantizer = lowering.quantizers[name]
            fixed = lowering.table(fixed, lambda v: v, quantizer)
        out_slots.append(fixed.slot)
        out_scales.append(fixed.scale)
    bound = _error_bound(lowering, [outputs[n] for n in results], out_slots, out_scales)
    return StepProgram(lowering.program, list(lowering.input_names), dict(lowering.quantizers),
                       list(results), out_slots, out_scales, bits, lookup_bits,
                       dict(zip(results, bound, strict=True)))


def _error_bound(lowering: Lowering, values: Sequence[ValueId], slots: Sequence[int],
                 scales: Sequence[float]) -> list[float]:
    """Per output, the largest distance between the decoded fixed-point step and the float
    step over the calibration steps: the error one step adds, as calibrated (not proven:
    a run away from the rehearsal's values can do worse)."""
    found = []
    for value, slot, scale in zip(values, slots, scales, strict=True):
        errors = [float(np.abs(lowering.program.values[slot][k] * scale - floats[value]).max())
                  for k, floats in enumerate(lowering.floats)]
        found.append(max(errors))
    return found


def _needed(module: Module, results: Sequence[str]) -> set[ValueId]:
    outputs = dict(module.function.outputs)
    graph = module.graph
    needed: set[ValueId] = set()
    for name in results:
        needed |= graph.ancestors(outputs[name]) | {outputs[name]}
    return needed


def _lower(lowering: Lowering, value: ValueId, calibration: Sequence[Arrays]
           ) -> Lowered:
    graph = lowering.module.graph
    node = graph.node(value)
    op = node.op
    if isinstance(op, InputOp):
        return _lower_input(lowering, value, op, calibration)
    if isinstance(op, ConstantOp):
        return np.asarray(op.value.array, dtype=np.float64)
    operands = [lowering.lowered[o] for o in graph.operands(value)]
    rule = _RULES.get(type(op))
    if rule is None and isinstance(op, UnaryElementwise):
        rule = _lower_unary
    if rule is None:
        raise CompileError(f"TFHE training cannot lower {op.name} to fixed point",
                           node.location,
                           hint="TFHE training supports linear models trained with the bce or "
                           "mse loss (Gemm, elementwise activations, sums); use backend='ckks' "
                           "or 'reference'")
    return rule(lowering, value, op, operands)


def _lower_input(lowering: Lowering, value: ValueId, op: InputOp,
                 calibration: Sequence[Arrays]) -> Fixed:
    name = op.input_name
    magnitude = lowering.magnitude(value)
    trained = name in lowering.weights
    if trained:  # across the run: the step's update included
        output = dict(lowering.module.function.outputs)[name]
        magnitude = max(magnitude, lowering.magnitude(output))
    signed = trained or not lowering.nonnegative(value)
    quantizer = fit_quantizer(magnitude, lowering.bits, signed)
    lowering.quantizers[name] = quantizer
    values = [quantizer.encode(s[name]) for s in calibration]
    for extreme in EXTREMES:  # the weights anywhere in their range: see EXTREMES
        edge = quantizer.high if extreme > 0 else quantizer.low
        values.append(np.full_like(values[0], edge) if trained else values[0])
    slot = lowering.program.input(values)
    lowering.input_names.append(name)
    return Fixed(slot, quantizer.scale)


def _scalar(constant: np.ndarray, lowering: Lowering, value: ValueId) -> float:
    if constant.size != 1:
        node = lowering.module.graph.node(value)
        raise CompileError(f"TFHE training multiplies by constant tensors of one element only, "
                           f"found shape {constant.shape}", node.location,
                           hint="fold the constant into the model's weights")
    factor = float(constant.reshape(()))
    if factor == 0.0:
        node = lowering.module.graph.node(value)
        raise CompileError("TFHE training cannot multiply by the constant 0", node.location)
    return factor


def _scaled(lowering: Lowering, source: Fixed, factor: float) -> Fixed:
    """source * factor: the scale takes |factor|, a negative factor negates q."""
    if factor > 0:
        return Fixed(source.slot, source.scale * factor)
    return Fixed(lowering.program.add(lambda q: -q, source.slot), source.scale * -factor)


def _lower_mul(lowering: Lowering, value: ValueId, op: MulOp, operands: list[Lowered]
               ) -> Lowered:
    a, b = operands
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        constant, other = (a, b) if isinstance(a, np.ndarray) else (b, a)
        assert isinstance(other, Fixed) and isinstance(constant, np.ndarray)
        return _scaled(lowering, other, _scalar(constant, lowering, value))
    a, b = lowering.product_operands(a, b)
    return Fixed(lowering.program.add(product_kernel, a.slot, b.slot), a.scale * b.scale)


def _lower_add_sub(lowering: Lowering, value: ValueId, op: AddOp | SubOp,
                   operands: list[Lowered]) -> Lowered:
    a, b = lowering.operand(value, 0), lowering.operand(value, 1)
    left, right, scale = lowering.align(a, b)
    kernel: Kernel = (lambda x, y: x + y) if isinstance(op, AddOp) else (lambda x, y: x - y)
    return Fixed(lowering.program.add(kernel, left, right), scale)


def _lower_neg(lowering: Lowering, value: ValueId, op: NegOp, operands: list[Lowered]
               ) -> Lowered:
    return _scaled(lowering, lowering.operand(value, 0), -1.0)


def _lower_gemm(lowering: Lowering, value: ValueId, op: GemmOp, operands: list[Lowered]
                ) -> Lowered:
    if isinstance(operands[1], np.ndarray):
        product = _frozen_matmul(lowering, value, op, operands[1])
    else:
        product = _encrypted_matmul(lowering, value, op)
    if len(operands) == 2:
        return product
    if isinstance(operands[2], np.ndarray):  # a frozen bias: a clear addition
        bias = np.rint(op.beta * operands[2] / product.scale).astype(np.int64)
        return Fixed(lowering.program.add(lambda x: x + bias, product.slot), product.scale)
    bias_fixed = _scaled(lowering, lowering.operand(value, 2), op.beta)
    left, right, scale = lowering.align(product, bias_fixed)
    return Fixed(lowering.program.add(lambda x, y: x + y, left, right), scale)


def _encrypted_matmul(lowering: Lowering, value: ValueId, op: GemmOp) -> Fixed:
    """alpha * A @ B, both encrypted: sum_k A[i, k] * B[k, j] by quarter squares."""
    a, b = lowering.product_operands(lowering.operand(value, 0), lowering.operand(value, 1))
    trans_a, trans_b = op.trans_a, op.trans_b

    def matmul(x: Any, y: Any) -> Any:
        x = np.transpose(x) if trans_a else x
        y = np.transpose(y) if trans_b else y
        rows, inner = x.shape
        columns = y.shape[1]
        terms = product_kernel(x.reshape((rows, inner, 1)), y.reshape((1, inner, columns)))
        return np.sum(terms, axis=1)

    product = Fixed(lowering.program.add(matmul, a.slot, b.slot), a.scale * b.scale)
    return _scaled(lowering, product, op.alpha)


def _frozen_matmul(lowering: Lowering, value: ValueId, op: GemmOp, weights: np.ndarray
                   ) -> Fixed:
    """A @ W with W a frozen layer's weights: quantized to `bits` bits in clear, an
    encrypted-by-clear product (no lookup). A step input goes through a copy, as the
    product's sums take its operand's width in concrete (see Lowering.align)."""
    source = lowering.shielded(lowering.operand(value, 0))
    matrix = op.alpha * (weights.T if op.trans_b else weights)
    quantizer = fit_quantizer(float(np.abs(matrix).max(initial=0.0)), lowering.bits, True)
    clear = quantizer.encode(matrix)
    trans_a = op.trans_a

    def matmul(x: Any) -> Any:
        return (np.transpose(x) if trans_a else x) @ clear

    return Fixed(lowering.program.add(matmul, source.slot), source.scale * quantizer.scale)


def _lower_reduce(lowering: Lowering, value: ValueId, op: ReduceSumOp | ReduceMeanOp,
                  operands: list[Lowered]) -> Lowered:
    source = lowering.detached(lowering.operand(value, 0))
    axes, keepdims = tuple(op.axes), op.keepdims

    def total(q: Any) -> Any:
        return np.sum(q, axis=axes, keepdims=keepdims)

    shape = lowering.module.graph.node(lowering.module.graph.operands(value)[0]).type.shape
    count = int(np.prod([shape[axis] for axis in axes])) if isinstance(op, ReduceMeanOp) else 1
    return Fixed(lowering.program.add(total, source.slot), source.scale / count)


def _lower_unary(lowering: Lowering, value: ValueId, op: Op, operands: list[Lowered]
                 ) -> Lowered:
    source = lowering.operand(value, 0)
    out = fit_quantizer(lowering.magnitude(value), lowering.bits,
                        not lowering.nonnegative(value))

    def function(v: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # exp overflow in a saturated sigmoid is fine
            return np.asarray(op.evaluate([v]), np.float64)

    return lowering.table(source, function, out)


_RULES: Mapping[type, Rule] = {
    MulOp: _lower_mul,
    AddOp: _lower_add_sub,
    SubOp: _lower_add_sub,
    NegOp: _lower_neg,
    GemmOp: _lower_gemm,
    ReduceSumOp: _lower_reduce,
    ReduceMeanOp: _lower_reduce,
}



__all__ = ["EXTREMES", "lower_step"]
