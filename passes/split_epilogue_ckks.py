"""split-epilogue-ckks: trailing ops CKKS cannot (or need not) compute go to the client.

Applies to: modules after `annotate-secrecy` and `annotate-ranges`. Requires: nothing
else. Establishes: the secret ops at the end of the function whose every user is
also such an op (or that are outputs) -- ops with no CKKS form (argmax for labels, a
label gather, integer casts), non-polynomial functions (a classifier's final sigmoid
or softmax, which the client computes exactly instead of approximately), and layout
ops among them -- run on the client after decryption: each secret value they read is
passed through `ckks.decrypt{output_name}` (the server returns it under that name,
the client decrypts it), and they become public (clear) values. The text form shows
the split: everything after a `ckks.decrypt` is the client's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.graph import Function, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.ops import ckks
from fhec.ir.ops.core import InputOp
from fhec.passes.approximate_activations import APPROXIMATED
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.pack_slots_ckks import RULES

# Non-polynomial ops a classifier applies last, on top of the approximated activations.
FINAL_FUNCTIONS = frozenset({"nn.softmax", "nn.log_softmax"})


@register_pass
@dataclass(frozen=True, slots=True)
class SplitEpilogueCkks(Pass):
    name = "split-epilogue-ckks"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        client = client_nodes(function)
        if not client:
            return
        graph = function.graph
        boundary = sorted(
            {o for v in client for o in graph.operands(v) if graph.node(o).type.secret} - client
        )
        for index, value in enumerate(boundary):
            source = graph.node(value)
            decrypt = graph.add(
                ckks.DecryptOp(f"epilogue.{index}"),
                [value],
                source.type.with_secret(False),
                source.location,
                tuple(a for a in source.annotations if isinstance(a, Interval)),
            )
            for user in {u for u, _ in graph.users(value)} & client:
                operands = [decrypt if o == value else o for o in graph.operands(user)]
                graph.set_operands(user, operands)
        for value in graph.topological_order():  # now public: computed in the clear
            if value in client:
                node = graph.node(value)
                types = [graph.node(o).type for o in graph.operands(value)]
                graph.set_node(value, replace(node, type=node.op.infer(types)))
        names = sorted({graph.node(v).location.describe() for v in client})
        context.notes[self.name] = f"computed by the client after decryption: {', '.join(names)}"


def client_nodes(function: Function) -> set[ValueId]:
    """The trailing secret ops to compute on the client (see the module docstring)."""
    graph = function.graph
    outputs = {v for _, v in function.outputs}
    client: set[ValueId] = set()
    for value in reversed(graph.topological_order()):
        node = graph.node(value)
        if not node.type.secret or isinstance(node.op, InputOp):
            continue
        users = {u for u, _ in graph.users(value)}
        if not users <= client or not (users or value in outputs):
            continue
        name = node.op.name
        no_form = name not in RULES and name not in ckks.LAYOUT_OPS
        float_cast = name == "tensor.cast" and node.type.dtype.is_float
        if no_form or name in APPROXIMATED or name in FINAL_FUNCTIONS or float_cast:
            client.add(value)
        elif name in ckks.LAYOUT_OPS and users and users <= client:
            client.add(value)  # moving values between client ops: the client does it
    return client
