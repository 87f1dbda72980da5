"""validate-scales-ckks: check the scales of every scheme value.

Applies to: modules after `select-params-ckks`. Requires: nothing. Establishes
nothing (never changes the graph); raises an InternalCompilerError naming the node
when: values added together (or a plaintext and the ciphertext it meets) have
different scales, a rescale divides by a prime of another size than the chain has
at its level, a scale is below 2**min_scale_bits (too few bits of precision), or
(with parameters chosen) a value outgrows the modulus at its level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.ops.ckks import RescaleOp
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.select_params_ckks import value_magnitudes
from fhec.passes.validate_levels_ckks import module_params


@register_pass
@dataclass(frozen=True, slots=True)
class ValidateScalesCkks(Pass):
    name = "validate-scales-ckks"
    kind = PassKind.VALIDATE
    min_scale_bits: int = 10

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        states = ckks_states(graph, self.name, strict=True)
        params = module_params(module)
        magnitudes = value_magnitudes(graph, states, self.name) if params else {}
        for value, state in states.items():
            node = graph.node(value)
            where = f"%{value} {node.op.name} at {node.location.describe()}"
            if state.scale_bits < self.min_scale_bits:
                raise InternalCompilerError(
                    f"{where}: scale 2^{state.scale_bits} is below 2^{self.min_scale_bits}",
                    self.name,
                )
            if params is None:
                continue
            if isinstance(node.op, RescaleOp):
                level = states[graph.operands(value)[0]].level
                if node.op.bits != params.rescale_bits_at(level):
                    raise InternalCompilerError(
                        f"{where}: rescales by {node.op.bits} bits, the chain's prime at level "
                        f"{level} has {params.rescale_bits_at(level)}",
                        self.name,
                    )
            needed = state.scale_bits + math.log2(max(magnitudes[value], 1.0))
            if needed >= params.data_bits_at(state.level):
                raise InternalCompilerError(
                    f"{where}: needs {needed:.1f} bits at level {state.level}, where the "
                    f"modulus has {params.data_bits_at(state.level)}",
                    self.name,
                )
