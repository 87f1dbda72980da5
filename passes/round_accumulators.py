"""round-accumulators: drop the low bits of each lookup's input to fit a bit budget.

Applies to: the integer form lower-to-integer establishes. Requires: `lower-to-integer`,
and calibration samples in the pass context (they give each accumulator's width).
Establishes: every `tfhe.lookup` reads at most `bits` significant bits (`max_bits` where
the mixed precision below widens it). An input of
calibrated width w > bits first goes through `tfhe.round{lsbs = w - bits}`, concrete's
`round_bit_pattern`: a bootstrap's cost grows steeply with its input's width, and a
requantized activation of n bits seldom needs more than n + 1 bits of its
accumulator. The lookup's table is unchanged: it is a function of every integer,
and now reads rounded ones. `approximate` lets concrete fold the rounding into the
lookup (one bootstrap, off by one step at times) instead of one bootstrap per
removed bit. `bits = 0` rounds nothing. Lookups of a difference are never rounded: a
max pool's or a softmax's relu of two quantized activations' difference (one bit
wider than them), a softmax's exp(x - max) and exp(x - max - log sum) (see
passes/tfhe_softmax.py): their inputs are not accumulators, and rounding them would
change the maximum or cost the softmax its precision.

Mixed precision: with `max_bits` above `bits`, the lookups whose widening lowers the
rounding's error on the calibration samples the most per unit of concrete's cost
read more bits, one at a time, until that error is at most `error_target`
(passes/tfhe_precision.py). `max_bits` at most `bits` (0, say) reads `bits` everywhere.
The default target, 0.065, gives the golden digits MLP 5 bits in the first layer's
lookups and 6 in the second's with 64 calibration samples, the whole training split,
or any half of it; at 0.05 the larger sets widened both layers to 6 bits, 2.5 times
concrete's cost, with no better held-out accuracy in simulation (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fhec.ir.errors import FhecError
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.elementwise import SubOp
from fhec.ir.ops.tfhe import LookupOp, RoundOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.lower_to_integer import calibrated_integer_ranges, integer_width
from fhec.passes.tfhe_precision import choose_bits, insert_rounding

MAX_LOOKUP_BITS = 16  # concrete's widest table lookup


def lsbs_to_remove(calibrated: range, bits: int) -> int:
    """The low bits to drop so that `bits` remain, counted in the width that holds both
    the values and their rounded values (rounding up may need one more bit: then one
    more is dropped, and the lookup still reads `bits`)."""
    width, _ = integer_width(calibrated)
    if width <= bits:
        return 0
    lsbs = width - bits
    return lsbs + 1 if rounded_width(calibrated, lsbs) > width else lsbs


def rounded_width(calibrated: range, lsbs: int) -> int:
    """The width of the values in `calibrated` and of their rounded values."""
    ends = RoundOp(lsbs).evaluate([np.array([calibrated.start, calibrated.stop - 1])])
    hull = range(min(calibrated.start, int(ends[0])), max(calibrated.stop - 1, int(ends[1])) + 1)
    return integer_width(hull)[0]


@register_pass
@dataclass(frozen=True, slots=True)
class RoundAccumulators(Pass):
    name = "round-accumulators"
    kind = PassKind.TRANSFORM
    bits: int = 5
    approximate: bool = True
    # mixed precision (passes/tfhe_precision.py): lookups widen up to max_bits while
    # the rounding's calibration error is above error_target; at most `bits` (0, say):
    # every lookup reads `bits`
    max_bits: int = 6
    error_target: float = 0.065

    def __post_init__(self) -> None:
        if self.bits != 0 and not 2 <= self.bits <= MAX_LOOKUP_BITS:
            raise FhecError(
                f"round-accumulators: bits={self.bits} is out of range",
                hint=f"choose 2 to {MAX_LOOKUP_BITS} bits, or 0 to round nothing",
            )
        if not 0 <= self.max_bits <= MAX_LOOKUP_BITS:
            raise FhecError(
                f"round-accumulators: max_bits={self.max_bits} is out of range",
                hint=f"choose up to {MAX_LOOKUP_BITS} bits, or 0 (as `bits`) for none wider",
            )

    def run(self, module: Module, context: PassContext) -> None:
        if self.bits == 0:
            return
        graph = module.graph
        lookups = [v for v in graph if isinstance(graph.node(v).op, LookupOp)]
        # a difference (max pool, softmax): exact, narrow
        lookups = [v for v in lookups if not isinstance(_source_op(module, v), SubOp)]
        if not lookups:
            return
        ranges = calibrated_integer_ranges(module, context.calibration)

        def lsbs(lookup: ValueId, bits: int) -> int:
            return lsbs_to_remove(ranges[graph.operands(lookup)[0]], bits)

        bits = {lookup: self.bits for lookup in lookups}
        if self.max_bits > self.bits:
            bits = choose_bits(
                module, context.calibration, bits, lsbs, self.max_bits, self.error_target
            )
        insert_rounding(module, {lk: lsbs(lk, b) for lk, b in bits.items()}, self.approximate)


def _source_op(module: Module, lookup: ValueId) -> object:
    return module.graph.node(module.graph.operands(lookup)[0]).op
