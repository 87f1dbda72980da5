"""annotate-ranges: bound every value, from calibration data or by interval arithmetic.

Applies to: any module. Requires: types as `infer-shapes` establishes them (interval
rules read operand shapes); calibration samples, when given, that match the function's
input types exactly (`fhec.runtime.calibration` cuts them so).
Establishes: with calibration (`context.calibration`), every value carries
`#range{lo, hi}`, the hull of the values it took over all samples through the
reference interpreter, each end moved out by `margin` times the range's width.
Without calibration, ranges come from each op's `interval` rule (sound bounds), the
inputs taken to lie in [`input_min`, `input_max`] (these two options are used only
then); a value whose op gives no rule, or with an operand left unbounded, stays
unannotated. Annotations only: the graph's structure is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fhec.ir.errors import FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.interval import Interval
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class AnnotateRanges(Pass):
    name = "annotate-ranges"
    kind = PassKind.ANNOTATE
    # Calibrated ranges widen by this fraction of their width at each end (headroom for
    # inputs a little beyond the samples seen).
    margin: float = 0.0
    # Bounds of every input, used only when no calibration data is given.
    input_min: float = -1.0
    input_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.margin >= 0.0:
            raise FhecError(f"annotate-ranges: margin must be at least 0, got {self.margin}")
        if not self.input_min <= self.input_max:
            raise FhecError(
                f"annotate-ranges: input_min {self.input_min} is above input_max {self.input_max}"
            )

    def run(self, module: Module, context: PassContext) -> None:
        if context.calibration:
            ranges = self._calibrated(module, context.calibration)
        else:
            ranges = self._propagated(module.graph)
        graph = module.graph
        for value, interval in ranges.items():
            graph.set_node(value, graph.node(value).with_annotation(interval))

    def _calibrated(self, module: Module, samples: Sequence[Sample]) -> dict[ValueId, Interval]:
        seen: dict[ValueId, list[Interval]] = {}
        for sample in samples:
            for value, array in evaluate_all(module, sample).items():
                seen.setdefault(value, []).append(Interval.of(array))
        return {value: self._widen(Interval.hull(items)) for value, items in seen.items()}

    def _widen(self, interval: Interval) -> Interval:
        slack = self.margin * interval.width
        return Interval(interval.lo - slack, interval.hi + slack) if slack else interval

    def _propagated(self, graph: Graph) -> dict[ValueId, Interval]:
        ranges: dict[ValueId, Interval] = {}
        for value in graph.topological_order():
            interval = self._interval_of(graph, value, ranges)
            if interval is not None:
                ranges[value] = interval
        return ranges

    def _interval_of(
        self, graph: Graph, value: ValueId, ranges: dict[ValueId, Interval]
    ) -> Interval | None:
        op = graph.node(value).op
        if isinstance(op, InputOp):
            return Interval(self.input_min, self.input_max)
        operands = graph.operands(value)
        if any(o not in ranges for o in operands):
            return None
        constants: list[np.ndarray | None] = []
        for operand in operands:
            producer = graph.node(operand).op
            constants.append(producer.value.array if isinstance(producer, ConstantOp) else None)
        types = [graph.node(o).type for o in operands]
        return op.interval_with_types([ranges[o] for o in operands], constants, types)
