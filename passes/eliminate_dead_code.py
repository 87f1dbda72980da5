"""eliminate-dead-code: remove values no output depends on.

Applies to: any module. Requires: nothing. Establishes: every node is an input
or an ancestor of an output. Inputs are kept even when unused: they are the
function's signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.graph import Module
from fhec.ir.ops.core import InputOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class EliminateDeadCode(Pass):
    name = "eliminate-dead-code"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        live: set[int] = set()
        for _, value in module.function.outputs:
            live.add(value)
            live |= graph.ancestors(value)
        for value in reversed(graph.topological_order()):
            if value not in live and not isinstance(graph.node(value).op, InputOp):
                graph.remove(value)
