"""insert-relinearize-ckks: relinearize products lazily, where they must be.

Applies to: modules after `insert-rescale-ckks`. Requires: nothing more.
Establishes: every operand of a `ckks.mul`, `ckks.rescale`, `ckks.mod_switch` or
`ckks.slot_sum` or `ckks.matvec_diagonal` (rotations) has 2 polynomials. A
3-polynomial value (a product, or a sum of products) is relinearized on its way
into a product or a rescale, and nowhere else: products summed before their rescale
are relinearized once, and outputs are decrypted as they are (decryption takes any
size). Rescaling a 3-polynomial ciphertext would multiply its rounding error by the
secret key squared (about 1e-6 instead of 1e-9 at a 2^40 scale), hence the rescale
rule. One `ckks.relinearize` serves every user of the same value.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.graph import Module, ValueId
from fhec.ir.op import Op
from fhec.ir.ops.ckks import (
    CkksState,
    MatVecDiagonalOp,
    ModSwitchOp,
    MulOp,
    RelinearizeOp,
    RescaleOp,
    SlotSumOp,
)
from fhec.passes.annotate_states_ckks import annotate_states, insert_before, node_state
from fhec.passes.base import Pass, PassContext, PassKind, register_pass

# Rotations (slot sums, diagonal mat-vecs) key-switch: their operands need 2 polynomials.
ROTATING_OR_PRODUCT = (MulOp, RescaleOp, ModSwitchOp, SlotSumOp, MatVecDiagonalOp)


@register_pass
@dataclass(frozen=True, slots=True)
class InsertRelinearizeCkks(Pass):
    name = "insert-relinearize-ckks"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        graph = function.graph
        states: dict[ValueId, CkksState] = {}
        cache: dict[tuple[ValueId, Op], ValueId] = {}
        for value in graph.topological_order():
            if isinstance(graph.node(value).op, ROTATING_OR_PRODUCT):
                for index, operand in enumerate(graph.operands(value)):
                    if states[operand].size > 2:
                        relinearized = insert_before(function, value, index, RelinearizeOp(), cache)
                        node_state(graph, relinearized, states, self.name)
            node_state(graph, value, states, self.name)
        annotate_states(module, self.name)
