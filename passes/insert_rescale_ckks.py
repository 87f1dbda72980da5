"""insert-rescale-ckks: rescale after products, and match the scales that meet.

Applies to: modules lowered by `pack-slots-ckks`. Requires: nothing more (products
may still have 3 polynomials: `insert-relinearize-ckks` comes next).
Establishes: after each product (`ckks.mul`, `ckks.mul_plain`, `ckks.matmul_plain`)
come the rescales its policy asks for, each dividing by a prime of w bits, w the
waterline (the largest scale of a secret input, EVA's name for it):

- `waterline` (EVA, Dathathri et al., PLDI 2020): rescale while the scale stays at
  or above the waterline afterwards. A product of two values at the waterline (2w)
  drops back to w; a value times a low-scale constant stays unrescaled (and a level
  is saved) until the scale has grown enough.
- `always`: one rescale after every product, whatever the scale (for comparison;
  a product by a low-scale constant then falls below the waterline and loses bits).

A product summed by a `ckks.reduce_add` (its only user) is rescaled after the sum
instead: one rescale, and one relinearization, for the whole dot product.

Values meeting in an addition (or a concat) have one scale: the lower-scale one
is multiplied by the constant 1 encoded at the difference (no level spent), and a
plaintext meeting a ciphertext is encoded at its scale. Levels may still differ:
`insert-mod-switch-ckks` matches them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import FhecError
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import InputOp
from fhec.passes.annotate_states_ckks import (
    annotate_states,
    insert_after,
    node_state,
    redirect_uses,
)
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import add_constant

POLICIES = ("waterline", "always")
MULTIPLICATIVE = (ckks.MulOp, ckks.MulPlainOp, ckks.MatMulPlainOp)
ADDITIVE = (ckks.AddOp, ckks.SubOp, ckks.AddPlainOp, ckks.SubPlainOp)


@register_pass
@dataclass(frozen=True, slots=True)
class InsertRescaleCkks(Pass):
    name = "insert-rescale-ckks"
    kind = PassKind.TRANSFORM
    policy: str = "waterline"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise FhecError(
                f"insert-rescale-ckks: unknown policy {self.policy!r}",
                hint=f"use one of: {', '.join(POLICIES)}",
            )

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        graph = function.graph
        waterline = _waterline(module)
        if waterline is None:
            return  # nothing is encrypted
        states: dict[ValueId, ckks.CkksState] = {}
        deferred: set[ValueId] = set()  # sums of products, rescaled once after the sum
        for value in graph.topological_order():
            op = graph.node(value).op
            if graph.node(value).type.secret and (
                isinstance(op, ADDITIVE) or op.name == "tensor.concat"
            ):
                _match_scales(function, value, states)
            state = node_state(graph, value, states, self.name)
            if state is None or not (isinstance(op, MULTIPLICATIVE) or value in deferred):
                continue
            summed = _summed_by(graph, value)
            if summed is not None:
                deferred.add(summed)
                continue
            for _ in range(self._rescales(state.scale_bits, waterline)):
                value = insert_after(function, value, ckks.RescaleOp(waterline))
                node_state(graph, value, states, self.name)
        annotate_states(module, self.name)

    def _rescales(self, scale: int, waterline: int) -> int:
        if self.policy == "waterline":
            return max((scale - waterline) // waterline, 0)
        return 1  # a product is above the waterline: every factor has >= 10 bits


def _summed_by(graph: Graph, value: ValueId) -> ValueId | None:
    """The `ckks.reduce_add` that is the only user of `value`, if any: a sum of products
    takes one rescale (and one relinearization) instead of one per product."""
    users = graph.users(value)
    if len(users) == 1 and isinstance(graph.node(users[0][0]).op, ckks.ReduceAddOp):
        return users[0][0]
    return None


def _waterline(module: Module) -> int | None:
    """The largest scale of a secret input (None when nothing is encrypted)."""
    scales: list[int] = []
    for value in module.graph:
        node = module.graph.node(value)
        state = node.annotation(ckks.CkksState)
        if isinstance(node.op, InputOp) and state is not None:
            scales.append(state.scale_bits)
    return max(scales, default=None)


def _match_scales(
    function: Function, value: ValueId, states: dict[ValueId, ckks.CkksState]
) -> None:
    graph = function.graph
    operands = graph.operands(value)
    target = max(states[o].scale_bits for o in operands if graph.node(o).type.secret)
    for index, operand in enumerate(operands):
        node = graph.node(operand)
        if isinstance(node.op, ckks.EncodeOp):
            graph.set_node(operand, replace(node, op=replace(node.op, scale_bits=target)))
            node_state(graph, operand, states, InsertRescaleCkks.name)
        elif node.type.secret and states[operand].scale_bits < target:
            gap = target - states[operand].scale_bits
            one = add_constant(graph, np.asarray(1.0, dtype=node.type.dtype.numpy), node.location)
            encoded = graph.add(ckks.EncodeOp(gap, 0), [one], graph.node(one).type, node.location)
            lifted = graph.add(ckks.MulPlainOp(), [operand, encoded], node.type, node.location)
            redirect_uses(function, operand, lifted, [(value, index)])
            for new in (encoded, lifted):
                node_state(graph, new, states, InsertRescaleCkks.name)
