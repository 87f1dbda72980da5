"""annotate-secrecy: mark which inputs are encrypted and propagate secrecy forward.

Applies to: any module. Requires: nothing. Establishes: an input is secret unless
named in `public` (comma-separated input names); every other value is secret iff
one of its operands is (constants never are), which is each op's type rule.
Changes types only, never the graph's structure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.ir.ops.core import InputOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class AnnotateSecrecy(Pass):
    name = "annotate-secrecy"
    kind = PassKind.TRANSFORM
    public: str = ""

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        public = {name.strip() for name in self.public.split(",") if name.strip()}
        input_names = set()
        for value in graph.topological_order():
            node = graph.node(value)
            if isinstance(node.op, InputOp):
                input_names.add(node.op.input_name)
                secret_type = node.op.type.with_secret(node.op.input_name not in public)
                op = replace(node.op, type=secret_type)
                graph.set_node(value, replace(node, op=op, type=secret_type))
                continue
            operand_types = [graph.node(o).type for o in graph.operands(value)]
            graph.set_node(value, replace(node, type=node.op.infer(operand_types)))
        unknown = public - input_names
        if unknown:
            raise FhecError(
                f"annotate-secrecy: no input named {sorted(unknown)[0]!r}",
                hint=f"inputs are: {', '.join(sorted(input_names))}",
            )
