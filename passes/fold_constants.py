"""fold-constants: compute at compile time what depends on constants only.

Applies to: any module. Requires: nothing (types as `infer-shapes` establishes them).
Establishes: no node other than `func.input` and `tensor.constant` has only constant
operands, except where the op has no plaintext semantics, the result is secret, or
the result has more than `max_elements` elements (left as they are). A folded node
becomes a `tensor.constant` of `op.evaluate(...)` in place: same value, type,
location and annotations. Constants a fold left without users are erased.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import erase_if_dead


@register_pass
@dataclass(frozen=True, slots=True)
class FoldConstants(Pass):
    name = "fold-constants"
    kind = PassKind.TRANSFORM
    # Results larger than this stay computed at run time (keeps artifacts small).
    max_elements: int = 1 << 24

    def __post_init__(self) -> None:
        if self.max_elements < 0:
            raise FhecError(
                f"fold-constants: max_elements must be at least 0, got {self.max_elements}"
            )

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        # One sweep in topological order suffices: a folded value is a constant by the
        # time its users are visited.
        for value in graph.topological_order():
            if value in graph and self._foldable(graph, value):
                operands = graph.operands(value)
                _fold(graph, value)
                for operand in operands:
                    erase_if_dead(module.function, operand)

    def _foldable(self, graph: Graph, value: ValueId) -> bool:
        node = graph.node(value)
        if isinstance(node.op, InputOp | ConstantOp) or node.type.secret:
            return False
        if node.type.size > self.max_elements:
            return False
        return all(isinstance(graph.node(o).op, ConstantOp) for o in graph.operands(value))


def _fold(graph: Graph, value: ValueId) -> None:
    node = graph.node(value)
    arrays = [graph.node(o).op.evaluate([]) for o in graph.operands(value)]
    try:
        result = np.asarray(node.op.evaluate(arrays))
    except NotImplementedError:
        return  # an op without plaintext semantics (a scheme op) stays as it is
    if result.shape != node.type.shape:
        raise ValueError(
            f"{node.op.name} at {node.location.describe()} evaluated to shape "
            f"{result.shape}, its type says {node.type.shape}"
        )
    constant = ConstantOp.of(result.astype(node.type.dtype.numpy, copy=False))
    graph.set_operands(value, ())
    graph.set_node(value, replace(node, op=constant))
