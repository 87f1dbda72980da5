"""fold-batchnorm: inference batch normalization into the weights before it, or x*a + b.

Applies to: `nn.batch_norm(x, scale, bias, mean, var){epsilon}` whose four parameters
are constants; one with parameters computed at run time stays as it is.
Requires: constant parameters folded (`fold-constants`).
Establishes: no `nn.batch_norm` with constant parameters is left. With
a = scale / sqrt(var + epsilon) and b = bias - mean * a (per channel, axis 1):
- after a `linalg.conv`, `linalg.gemm` (weights B) or 2-D `linalg.matmul` whose weights
  and bias are constants and whose only user is the batch norm, the normalization
  folds into that op: its weights scale by a along the output channel and its bias
  becomes a * bias + b (a matmul becomes a gemm to carry the bias); the op keeps its
  location, the batch norm's users use it instead;
- otherwise the batch norm becomes `x * a + b`, with a and b shaped (C, 1, ...) to
  broadcast on axis 1.
New nodes and constants carry the batch norm's location. Constants left unused are erased.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.graph import Function, Module, ValueId
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import AddOp, MulOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import BatchNormOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import Build, add_constant, apply_replacement, erase_if_dead


@dataclass(frozen=True, slots=True)
class _Affine:
    """The batch norm as y = gain * x + shift per channel (float64, shape (C,))."""

    gain: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, epsilon: float, params: list[np.ndarray]) -> _Affine:
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        gain = scale / np.sqrt(var + epsilon)
        return cls(gain, bias - mean * gain)


@register_pass
@dataclass(frozen=True, slots=True)
class FoldBatchnorm(Pass):
    name = "fold-batchnorm"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        for value in function.graph.topological_order():
            node = function.graph.node(value)
            if not isinstance(node.op, BatchNormOp):
                continue
            params = [_constant(function, o) for o in function.graph.operands(value)[1:]]
            if any(p is None for p in params):
                continue  # parameters known only at run time: nothing to fold
            affine = _Affine.of(node.op.epsilon, [p for p in params if p is not None])
            if not _fold_into_producer(function, value, affine):
                _replace_by_multiply_add(function, value, affine)


def _constant(function: Function, value: ValueId) -> np.ndarray | None:
    op = function.graph.node(value).op
    return op.value.array if isinstance(op, ConstantOp) else None


def _fold_into_producer(function: Function, norm: ValueId, affine: _Affine) -> bool:
    graph = function.graph
    producer = graph.operands(norm)[0]
    sole_user = graph.users(producer) == [(norm, 0)]
    is_output = any(v == producer for _, v in function.outputs)
    if not sole_user or is_output or graph.node(producer).type != graph.node(norm).type:
        return False
    build = _folded(function, producer, norm, affine)
    if build is None:
        return False
    if not apply_replacement(function, producer, build):
        for operand in build.operands:  # the new constants of a rejected fold
            erase_if_dead(function, operand)
        return False
    # The producer now computes the batch norm's value: it takes over its annotations.
    annotations = graph.node(norm).annotations
    apply_replacement(function, norm, producer)
    graph.set_node(producer, replace(graph.node(producer), annotations=annotations))
    return True


def _folded(
    function: Function, producer: ValueId, norm: ValueId, affine: _Affine
) -> Build | None:
    """The producer with the batch norm folded in, or None when it cannot take it."""
    graph = function.graph
    op = graph.node(producer).op
    if not isinstance(op, ConvOp | GemmOp | MatMulOp):
        return None
    operands = graph.operands(producer)
    weights = _constant(function, operands[1])
    bias = _constant(function, operands[2]) if len(operands) == 3 else None
    if weights is None or (len(operands) == 3 and bias is None):
        return None
    gain, shift = affine.gain, affine.shift
    new_op: Op
    if isinstance(op, ConvOp):  # weights (M, C/group, *k): output channel on axis 0
        new_op = op
        new_weights = weights * gain.reshape(-1, *([1] * (weights.ndim - 1)))
        new_bias = (0.0 if bias is None else bias) * gain + shift
    elif isinstance(op, GemmOp):  # output column j reads row j of B when trans_b
        new_op = replace(op, beta=1.0)
        new_weights = weights * (gain[:, None] if op.trans_b else gain[None, :])
        new_bias = (0.0 if bias is None else op.beta * bias) * gain + shift
    elif isinstance(op, MatMulOp) and weights.ndim == graph.node(operands[0]).type.rank == 2:
        new_op = GemmOp()  # a matmul has no bias operand: a gemm carries it
        new_weights = weights * gain[None, :]
        new_bias = shift
    else:
        return None
    location = graph.node(norm).location
    dtype = graph.node(producer).type.dtype.numpy
    return Build(
        new_op,
        (
            operands[0],
            add_constant(graph, new_weights.astype(weights.dtype), location),
            add_constant(graph, np.asarray(new_bias).astype(dtype), location),
        ),
    )


def _replace_by_multiply_add(function: Function, norm: ValueId, affine: _Affine) -> None:
    graph = function.graph
    node = graph.node(norm)
    x = graph.operands(norm)[0]
    x_type = graph.node(x).type
    # (C,) -> (C, 1, ..., 1): broadcasts on axis 1 of x (N, C, *spatial).
    channel_shape = (-1, *([1] * (x_type.rank - 2)))
    dtype = x_type.dtype.numpy
    gain = add_constant(graph, affine.gain.reshape(channel_shape).astype(dtype), node.location)
    shift = add_constant(graph, affine.shift.reshape(channel_shape).astype(dtype), node.location)
    mul_type = MulOp().infer([x_type, graph.node(gain).type])
    scaled = graph.add(MulOp(), (x, gain), mul_type, node.location)
    if not apply_replacement(function, norm, Build(AddOp(), (scaled, shift))):
        raise ValueError(f"x * a + b does not keep the type {node.type} of the batch norm")
