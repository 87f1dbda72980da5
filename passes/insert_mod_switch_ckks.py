"""insert-mod-switch-ckks: bring the operands of each op to one level.

Applies to: modules after `insert-rescale-ckks`. Requires: scales already matched.
Establishes: the ciphertext operands of every scheme op (and concat) are at one
level, the deepest of them: the others are switched down with `ckks.mod_switch`
(dropping primes without dividing, so the scale is kept); one switch serves every
user that needs the same value at the same level. Plaintexts are encoded at the
level they are used (`ckks.encode` takes it): small and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.graph import Function, Module, ValueId
from fhec.ir.op import Op
from fhec.ir.ops import ckks
from fhec.passes.annotate_states_ckks import annotate_states, insert_before, node_state
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class InsertModSwitchCkks(Pass):
    name = "insert-mod-switch-ckks"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        graph = function.graph
        cache: dict[tuple[ValueId, Op], ValueId] = {}
        states: dict[ValueId, ckks.CkksState] = {}
        for value in graph.topological_order():
            op = graph.node(value).op
            operands = graph.operands(value)
            joins = isinstance(op, ckks.CkksOp) or op.name in ckks.LAYOUT_OPS
            if graph.node(value).type.secret and joins and len(operands) > 1:
                self._match_levels(function, value, states, cache)
            node_state(graph, value, states, self.name)
        annotate_states(module, self.name)

    def _match_levels(
        self,
        function: Function,
        value: ValueId,
        states: dict[ValueId, ckks.CkksState],
        cache: dict[tuple[ValueId, Op], ValueId],
    ) -> None:
        graph = function.graph
        operands = graph.operands(value)
        target = max(states[o].level for o in operands if graph.node(o).type.secret)
        for index, operand in enumerate(operands):
            node = graph.node(operand)
            if isinstance(node.op, ckks.EncodeOp):
                graph.set_node(operand, replace(node, op=replace(node.op, level=target)))
                node_state(graph, operand, states, self.name)
            elif operand in states and states[operand].level < target:
                gap = target - states[operand].level
                switched = insert_before(function, value, index, ckks.ModSwitchOp(gap), cache)
                node_state(graph, switched, states, self.name)
