"""infer-shapes: recompute every value's type from its op's type rule.

Applies to: any module. Requires: nothing. Establishes: each node's type equals
`op.infer(operand types)` (shapes, element types and secrecy), in topological
order, so a pass that changed an operand leaves no stale type behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.errors import CompileError
from fhec.ir.graph import Module
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class InferShapes(Pass):
    name = "infer-shapes"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        for value in graph.topological_order():
            node = graph.node(value)
            operand_types = [graph.node(o).type for o in graph.operands(value)]
            try:
                inferred = node.op.infer(operand_types)
            except ValueError as exc:
                raise CompileError(str(exc), node.location) from None
            if inferred != node.type:
                graph.set_node(value, replace(node, type=inferred))
