"""annotate-bit-widths: the width of every encrypted integer, and a check of the lookups.

Applies to: the integer form (lower-to-integer, round-accumulators). Requires:
calibration samples in the pass context. Establishes: every value the client
encrypts or the server computes carries `#bits{width, signed}` and `#range{lo, hi}`:
the integer type concrete assigns it from the same calibration inputset; for a
`tfhe.round` the width is the bits left after rounding, the precision its lookup
reads. Raises a CompileError naming the layer when a lookup would read more than
`max_lookup_bits` bits (concrete's table lookups take at most 16). A value that is
rounded gets the width that holds its rounded values too; the emitter hints concrete
with it, so concrete never sees a rounding change a width. Annotations only.

Inputs beyond the calibrated ones: the accumulators a lookup reads keep the headroom
quantize-tfhe's weight fit gave them (passes/tfhe_weights.py). A last layer's
accumulator, which only the client decodes, gets its calibrated width and no more: on
the golden digits MLP it exceeds its 13 bits on 3 of the 360 held-out digits (by at
most 4%), and concrete's execution still decodes those logits right (measured on two
of them; presumably the value spills into the encoding's padding bit, which no
bootstrap reads there; how far beyond the width that holds was not measured).
A bit of headroom there would cost 18% of the circuit's complexity (1.86e10 to 2.20e10),
since the second layer's lookups write into that width.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.errors import CompileError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.ops.tfhe import BitWidth, LookupOp, RoundOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.lower_to_integer import calibrated_integer_ranges, integer_width
from fhec.passes.round_accumulators import MAX_LOOKUP_BITS, rounded_width


def bit_widths(module: Module) -> dict[ValueId, BitWidth]:
    """The `#bits` annotation of every value that has one."""
    widths: dict[ValueId, BitWidth] = {}
    for value in module.graph:
        width = module.graph.node(value).annotation(BitWidth)
        if width is not None:
            widths[value] = width
    return widths


@register_pass
@dataclass(frozen=True, slots=True)
class AnnotateBitWidths(Pass):
    name = "annotate-bit-widths"
    kind = PassKind.ANNOTATE
    max_lookup_bits: int = MAX_LOOKUP_BITS

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        ranges = calibrated_integer_ranges(module, context.calibration)
        widths: dict[ValueId, BitWidth] = {}
        for value, calibrated in ranges.items():
            width, signed = integer_width(calibrated)
            for user, _ in graph.users(value):
                if isinstance(rounding := graph.node(user).op, RoundOp):
                    width = max(width, rounded_width(calibrated, rounding.lsbs))
            op = graph.node(value).op
            if isinstance(op, RoundOp):
                source = graph.operands(value)[0]
                width = rounded_width(ranges[source], op.lsbs) - op.lsbs
            widths[value] = BitWidth(width, signed)
            interval = Interval(float(calibrated.start), float(calibrated.stop - 1))
            node = graph.node(value).with_annotation(widths[value]).with_annotation(interval)
            graph.set_node(value, node)
        for value in graph:
            if isinstance(graph.node(value).op, LookupOp):
                self._check_lookup(graph, value, widths)

    def _check_lookup(self, graph: Graph, lookup: ValueId, widths: dict[ValueId, BitWidth]) -> None:
        source = graph.operands(lookup)[0]
        width = widths[source].width
        if width <= self.max_lookup_bits:
            return
        layer = graph.operands(source)[0] if isinstance(graph.node(source).op, RoundOp) else source
        raise CompileError(
            f"this layer's accumulator needs {width} bits where its table lookup "
            f"({graph.node(lookup).location.describe()}) reads it; concrete's table lookups "
            f"take at most {self.max_lookup_bits} bits",
            graph.node(layer).location,
            hint="quantize with fewer bits (quantize-tfhe{bits=...}) or round the "
            "accumulators (round-accumulators{bits=...})",
        )
