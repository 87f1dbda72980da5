"""promote-parameters: make the trainable initializers function inputs.

Applies to: a module fresh from the frontend, whose initializers are `tensor.constant`s
located at `(name, "Initializer")`. Requires: nothing; run it before any pass that
folds or rewrites constants (fold-constants, canonicalize), which would fold the
weights being trained into other constants.
Establishes: each initializer named in `names` (comma-separated; `last` = the weights
and bias of the last `linalg.gemm` whose weights are an initializer) is a secret
`func.input` of the same name, in place (same value, location, users), and the
types of its users are inferred again (secret); the other initializers stay
constants (frozen). A name that is no floating-point initializer is
an error listing those that are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.linalg import GemmOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.infer_shapes import InferShapes

LAST = "last"
INITIALIZER = "Initializer"
# At most this many candidates are listed in the error for an unknown name.
LISTED_CANDIDATES = 20


def trainable_initializers(graph: Graph) -> dict[str, ValueId]:
    """The floating-point initializers, by name: what may be trained."""
    found: dict[str, ValueId] = {}
    for value in graph.topological_order():
        node = graph.node(value)
        if (isinstance(node.op, ConstantOp) and node.location.op_type == INITIALIZER
                and node.type.dtype.is_float):
            found[node.location.name] = value
    return found


def last_gemm_parameters(graph: Graph, candidates: dict[str, ValueId]) -> list[str]:
    """Names of the weights (and bias) of the last gemm whose weights are an initializer."""
    by_value = {value: name for name, value in candidates.items()}
    for value in reversed(graph.topological_order()):
        if not isinstance(graph.node(value).op, GemmOp):
            continue
        operands = graph.operands(value)
        if operands[1] in by_value:
            return [by_value[o] for o in operands[1:] if o in by_value]
    raise CompileError(
        "'last' trains the weights and bias of the last Gemm, and the model has no Gemm "
        "whose weights are an initializer",
        hint="name the initializers to train instead (--trainable NAME ...)",
    )


@register_pass
@dataclass(frozen=True, slots=True)
class PromoteParameters(Pass):
    name = "promote-parameters"
    kind = PassKind.TRANSFORM
    names: str = LAST

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        candidates = trainable_initializers(graph)
        for name in self.resolve(graph, candidates):
            value = candidates[name]
            node = graph.node(value)
            tensor_type = node.type.with_secret(True)
            graph.set_node(value, replace(node, op=InputOp(name, tensor_type), type=tensor_type))
        InferShapes().run(module, context)  # secrecy flows on to the parameters' users

    def resolve(self, graph: Graph, candidates: dict[str, ValueId]) -> list[str]:
        """The initializer names `names` stands for, checked."""
        wanted = [n.strip() for n in self.names.split(",") if n.strip()]
        if wanted == [LAST]:
            return last_gemm_parameters(graph, candidates)
        if not wanted:
            raise FhecError("no parameters to train", hint="name initializers, or 'last'")
        inputs = {op.input_name for v in graph if isinstance(op := graph.node(v).op, InputOp)}
        for name in wanted:
            if name in inputs:
                raise FhecError(f"{name!r} is an input of the model, not a weight",
                                hint=f"trainable weights: {_listed(candidates)}")
            if name not in candidates:
                raise FhecError(f"the model has no trainable weight named {name!r}",
                                hint=f"trainable weights: {_listed(candidates)}")
        return list(dict.fromkeys(wanted))


def _listed(candidates: dict[str, ValueId]) -> str:
    names = list(candidates)
    if not names:
        return "(none: the model has no floating-point initializers)"
    shown = ", ".join(names[:LISTED_CANDIDATES])
    more = len(names) - LISTED_CANDIDATES
    return shown + (f" and {more} more" if more > 0 else "") + " (or 'last')"
