"""round-accumulators: drop the low bits of each lookup's input to fit a bit budget.

Applies to: the integer form lower-to-integer establishes. Requires: `lower-to-integer`,
and calibration samples in the pass context (they give each accumulator's width).
Establishes: every `tfhe.lookup` reads at most `bits` significant bits. An input of
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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.ir.ops.elementwise import SubOp
from fhec.ir.ops.tfhe import LookupOp, RoundOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.lower_to_integer import calibrated_integer_ranges, integer_width

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
    bits: int = 6
    approximate: bool = True

    def __post_init__(self) -> None:
        if self.bits != 0 and not 2 <= self.bits <= MAX_LOOKUP_BITS:
            raise FhecError(
                f"round-accumulators: bits={self.bits} is out of range",
                hint=f"choose 2 to {MAX_LOOKUP_BITS} bits, or 0 to round nothing",
            )

    def run(self, module: Module, context: PassContext) -> None:
        if self.bits == 0:
            return
        graph = module.graph
        lookups = [v for v in graph if isinstance(graph.node(v).op, LookupOp)]
        if not lookups:
            return
        ranges = calibrated_integer_ranges(module, context.calibration)
        for lookup in lookups:
            source = graph.operands(lookup)[0]
            if isinstance(graph.node(source).op, SubOp):
                continue  # a difference (max pool, softmax): exact, narrow
            lsbs = lsbs_to_remove(ranges[source], self.bits)
            if lsbs == 0:
                continue
            rounding = RoundOp(lsbs, self.approximate)
            location = graph.node(source).location
            rounded = graph.add(rounding, [source], graph.node(source).type, location)
            graph.set_operands(lookup, [rounded])
