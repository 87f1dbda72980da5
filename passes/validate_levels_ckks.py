"""validate-levels-ckks: check the levels and sizes of every scheme value.

Applies to: modules after the CKKS pipeline's scale and level passes. Requires:
nothing. Establishes nothing (never changes the graph); raises an
InternalCompilerError naming the node when: operands of one op sit at different
levels (plaintexts included), an operand of `ckks.mul` or `ckks.rescale` has 3
polynomials (not relinearized), a `#ckks` annotation differs from what the ops' state rules give,
or (once `select-params-ckks` has run) a value sits deeper than the modulus chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.ops.ckks import CkksParams, CkksState, MulOp, RescaleOp
from fhec.ir.ops.core import InputOp
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class ValidateLevelsCkks(Pass):
    name = "validate-levels-ckks"
    kind = PassKind.VALIDATE

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        states = ckks_states(graph, self.name, strict=True)
        params = module_params(module)
        for value, state in states.items():
            node = graph.node(value)
            where = f"%{value} {node.op.name} at {node.location.describe()}"
            if node.annotation(CkksState) != state:
                raise InternalCompilerError(
                    f"{where}: annotated {node.annotation(CkksState)}, the rules give {state}",
                    self.name,
                )
            if params is not None and state.level > params.depth:
                raise InternalCompilerError(
                    f"{where}: level {state.level} is below the chain's last ({params.depth})",
                    self.name,
                )
            if isinstance(node.op, MulOp | RescaleOp):
                for operand in graph.operands(value):
                    if states[operand].size != 2:
                        raise InternalCompilerError(
                            f"{where}: an operand has {states[operand].size} polynomials "
                            "(relinearize it first)",
                            self.name,
                        )


def module_params(module: Module) -> CkksParams | None:
    """The #ckks_params the inputs carry (one set for the module), or None."""
    found = {
        params
        for value in module.graph
        if isinstance(module.graph.node(value).op, InputOp)
        and (params := module.graph.node(value).annotation(CkksParams)) is not None
    }
    if len(found) > 1:
        raise InternalCompilerError(f"inputs carry different CKKS parameters: {found}")
    return found.pop() if found else None
