"""The client's epilogue: what follows a `ckks.decrypt` (split-epilogue-ckks).

The server computes every value up to the `ckks.decrypt` nodes and returns their
operands under the decrypt's `output_name` (and the model's outputs computed before
any decrypt under their own names); the client decrypts those and computes the rest
in the clear, with each op's own `evaluate` (the reference semantics).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import InputOp

# max |f'| of the functions a classifier applies last: their output error is at most
# this times their input's (softmax in the max norm: sum_j |ds_i/dx_j| = 2 s_i (1 - s_i)).
LIPSCHITZ = {
    "nn.sigmoid": 0.25,
    "nn.softmax": 0.5,
    "nn.tanh": 1.0,
    "nn.relu": 1.0,
    "arith.abs": 1.0,
    "nn.log_softmax": 2.0,
}
FLOAT32_UNIT = 2.0**-24
MOVES_ONLY = frozenset({*ckks.LAYOUT_OPS, "ckks.decrypt", "tensor.identity"})


def client_values(graph: Graph) -> set[ValueId]:
    """The decrypt nodes and every value computed from them."""
    found: set[ValueId] = set()
    for value in graph.topological_order():
        node = graph.node(value)
        if isinstance(node.op, ckks.DecryptOp) or any(o in found for o in graph.operands(value)):
            found.add(value)
    return found


def server_outputs(module: Module) -> list[tuple[str, ValueId]]:
    """What the server returns: outputs it computes, and the values the client decrypts
    to finish the others."""
    graph = module.graph
    client = client_values(graph)
    direct = [(name, v) for name, v in module.function.outputs if v not in client]
    decrypted = [
        (op.output_name, graph.operands(v)[0])
        for v in graph.topological_order()
        if isinstance(op := graph.node(v).op, ckks.DecryptOp)
    ]
    return [*direct, *decrypted]


def client_outputs(module: Module) -> list[str]:
    client = client_values(module.graph)
    return [name for name, v in module.function.outputs if v in client]


def finish(module: Module, decrypted: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs from the server's decrypted ones: the epilogue in the clear."""
    graph = module.graph
    client = client_values(graph)
    values: dict[ValueId, np.ndarray] = {}

    def value_of(value: ValueId) -> np.ndarray:
        if value not in values:
            node = graph.node(value)
            if isinstance(node.op, ckks.DecryptOp):
                array = decrypted[node.op.output_name]
                values[value] = np.asarray(array).astype(node.type.dtype.numpy)
            elif isinstance(node.op, InputOp) or (node.type.secret and value not in client):
                raise InternalCompilerError(
                    f"the client epilogue reads {node.op.name} at {node.location.describe()}",
                    "ckks",
                )
            else:
                operands = [value_of(o) for o in graph.operands(value)]
                values[value] = np.asarray(node.op.evaluate(operands))
        return values[value]

    result: dict[str, np.ndarray] = {}
    for name, value in module.function.outputs:
        result[name] = value_of(value) if value in client else np.asarray(decrypted[name])
    return result


def epilogue_bounds(module: Module, server: Mapping[ValueId, float]) -> dict[str, float]:
    """Bounds of the outputs the client finishes, from the server values' bounds: through
    ops that only move values, and those with a known Lipschitz constant. Integer
    outputs (labels) have none: for them agreement is what counts."""
    graph = module.graph
    client = client_values(graph)
    errors: dict[ValueId, float] = {}
    for value in graph.topological_order():
        if value not in client:
            continue
        node = graph.node(value)
        inputs = [
            server.get(o, 0.0) if isinstance(node.op, ckks.DecryptOp) else errors.get(o)
            for o in graph.operands(value)
            if o in client or isinstance(node.op, ckks.DecryptOp)
        ]
        if any(e is None for e in inputs) or not node.type.dtype.is_float:
            continue
        known = [e for e in inputs if e is not None]
        if node.op.name in MOVES_ONLY:
            errors[value] = max(known, default=0.0)
        elif node.op.name in LIPSCHITZ:  # and the clear float32 op's own rounding
            errors[value] = LIPSCHITZ[node.op.name] * max(known, default=0.0) + FLOAT32_UNIT
    return {name: errors[v] for name, v in module.function.outputs if v in errors}
