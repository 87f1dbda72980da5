"""annotate-dot-magnitudes: how large each encrypted dot product's terms get.

Applies to: any module; acts only with calibration samples (`context.calibration`).
Requires: `annotate-secrecy`. Establishes: every secret Gemm, MatMul and Conv carries
`#dot{abs_max}`, the largest sum of absolute terms sum_k |a_k b_k| of any of its output
elements over the calibration samples -- the op evaluated on its operands' absolute
values, without the bias. The CKKS error model bounds the float32 roundings of the
reference's dot products by it (K u sum_k |a_k b_k|, Higham's bound) instead of by
K u max|a| sum_k |b_k|, which pairs every weight with the largest input anywhere: on the
breast-cancer logistic regression 27 against 151. Like every calibrated range, it
describes inputs like the calibration samples. Annotations only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.graph import Module, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.interval import DotMagnitude
from fhec.ir.op import Op
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class AnnotateDotMagnitudes(Pass):
    name = "annotate-dot-magnitudes"
    kind = PassKind.ANNOTATE

    def run(self, module: Module, context: PassContext) -> None:
        if not context.calibration:
            return
        graph = module.graph
        for value, largest in _calibrated_magnitudes(module, context.calibration).items():
            graph.set_node(value, graph.node(value).with_annotation(DotMagnitude(largest)))


def _calibrated_magnitudes(module: Module, samples: Sequence[Sample]) -> dict[ValueId, float]:
    graph = module.graph
    products: dict[ValueId, Op] = {}
    for value in graph:
        absolute = _absolute_form(graph.node(value).op)
        if graph.node(value).type.secret and absolute is not None:
            products[value] = absolute
    largest: dict[ValueId, float] = {}
    if not products:
        return largest
    for sample in samples:
        values = evaluate_all(module, sample)
        for value, op in products.items():
            a, b = (np.abs(values[o].astype(np.float64)) for o in graph.operands(value)[:2])
            found = float(np.max(op.evaluate([a, b]), initial=0.0))
            largest[value] = max(largest.get(value, 0.0), found)
    return largest


def _absolute_form(op: Op) -> Op | None:
    """The op that sums |a_k b_k| where `op` sums a_k b_k (no bias), or None."""
    if isinstance(op, GemmOp):
        return replace(op, alpha=abs(op.alpha))
    if isinstance(op, MatMulOp | ConvOp):
        return op
    return None
