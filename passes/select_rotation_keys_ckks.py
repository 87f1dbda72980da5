"""select-rotation-keys-ckks: the Galois keys the circuit needs, and no others.

Applies to: modules after `select-params-ckks` (the slot count fixes the rotations of a
rotate-and-sum; a diagonal mat-vec's follow from its period). Requires: every
`func.input` carries #ckks_params. Establishes: when
some op rotates slots, every `func.input` carries #ckks_rotations{steps}, the sorted
distinct rotation steps of all of them (one Galois key each: the client generates
exactly these, and the report gives their count and size); a diagonal mat-vec counts
only the baby and giant steps its nonzero diagonals use. No annotation when nothing
rotates. Annotations only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.validate_levels_ckks import module_params


@register_pass
@dataclass(frozen=True, slots=True)
class SelectRotationKeysCkks(Pass):
    name = "select-rotation-keys-ckks"
    kind = PassKind.ANNOTATE

    def run(self, module: Module, context: PassContext) -> None:
        steps = rotation_steps(module)
        if not steps:
            return
        graph = module.graph
        for value in module.function.inputs:
            node = graph.node(value)
            graph.set_node(value, node.with_annotation(ckks.CkksRotations(steps)))
        context.notes[self.name] = f"{len(steps)} Galois keys (rotations by {_spell(steps)})"


class Rotating(Protocol):
    """An op that rotates slots: the steps it rotates by, for a slot count."""

    def rotation_steps(self, slots: int) -> tuple[int, ...]: ...


def rotation_steps(module: Module) -> tuple[int, ...]:
    """The rotations the module's ops perform (every op with a `rotation_steps(slots)`
    method: ckks.slot_sum, ckks.matvec_diagonal), from its parameters' slot count."""
    graph = module.graph
    rotating = [v for v in graph if hasattr(graph.node(v).op, "rotation_steps")]
    if not rotating:
        return ()
    params = module_params(module)
    if params is None:
        raise InternalCompilerError("rotations before parameters were chosen",
                                    "select-rotation-keys-ckks")
    return tuple(sorted({s for v in rotating for s in _steps(graph, v, params.slots)}))


def _steps(graph: Graph, value: ValueId, slots: int) -> tuple[int, ...]:
    """A diagonal mat-vec's steps from its matrix (only the nonzero diagonals rotate);
    any other rotating op's from its parameters."""
    op = graph.node(value).op
    if isinstance(op, ckks.MatVecDiagonalOp):
        encoded = graph.operands(value)[1]
        source = graph.node(graph.operands(encoded)[0]).op
        if isinstance(source, ConstantOp):
            return op.used_rotation_steps(source.value.array.astype(np.float64))
    return cast(Rotating, op).rotation_steps(slots)


def module_rotations(module: Module) -> tuple[int, ...]:
    """The rotation steps recorded on the module's inputs (empty: no Galois keys)."""
    graph = module.graph
    for value in module.function.inputs:
        found = graph.node(value).annotation(ckks.CkksRotations)
        if found is not None:
            return found.steps
    return ()


def _spell(steps: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in steps) if len(steps) <= 4 else (
        f"{steps[0]}, {steps[1]}, ..., {steps[-1]}")
