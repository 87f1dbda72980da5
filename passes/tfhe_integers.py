"""Facts about the encrypted integers of the TFHE passes, shared by lower-to-integer's
parts (passes/tfhe_layers.py, tfhe_lookups.py, tfhe_softmax.py), round-accumulators
and annotate-bit-widths: which ops the server computes, the calibrated range of every
encrypted integer, the width concrete gives it, and the exact max of two integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fhec.ir.errors import CompileError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interpreter import evaluate_all
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.elementwise import AddOp, SubOp
from fhec.ir.ops.linalg import ConvOp, MatMulOp
from fhec.ir.ops.shape import PadOp, ReshapeOp
from fhec.ir.ops.tfhe import LookupOp, QuantizeOp, RoundOp
from fhec.ir.types import TensorType
from fhec.passes.base import Sample

SERVER_OPS = (MatMulOp, ConvOp, PadOp, ReshapeOp, LookupOp, RoundOp, AddOp, SubOp)


def result_type(op: Op, graph: Graph, *operands: ValueId) -> TensorType:
    return op.infer([graph.node(o).type for o in operands])


def require_calibration(samples: Sequence[Sample]) -> None:
    if not samples:
        raise CompileError(
            "the TFHE integer passes need calibration data: it sets the lookups' widths",
            hint="pass calibration=... (fhec compile --calibration DATA.npz)",
        )


def calibrated_extremes(
    module: Module, samples: Sequence[Sample], values: Sequence[ValueId]
) -> dict[ValueId, tuple[float, float]]:
    """[min, max] of each of `values` over the calibration samples."""
    require_calibration(samples)
    ranges: dict[ValueId, tuple[float, float]] = {}
    for sample in samples:
        computed = evaluate_all(module, sample)
        for value in values:
            low, high = float(computed[value].min()), float(computed[value].max())
            if value in ranges:
                low, high = min(low, ranges[value][0]), max(high, ranges[value][1])
            ranges[value] = (low, high)
    return ranges


def calibrated_integer_ranges(module: Module, samples: Sequence[Sample]) -> dict[ValueId, range]:
    """The calibrated values of every encrypted integer (quantizer outputs and what the
    server computes from them), as a range of ints; widened to the `#range` a value
    carries (bounds by construction, e.g. passes/tfhe_softmax.py's)."""
    graph = module.graph
    integers = [
        v
        for v in graph
        if isinstance(graph.node(v).op, (QuantizeOp, *SERVER_OPS))
        and not graph.node(v).type.dtype.is_float
    ]
    seen = {
        value: (int(low), int(high))
        for value, (low, high) in calibrated_extremes(module, samples, integers).items()
    }
    for value in seen:  # bounds a lowering recorded hold whatever the input
        if (bounds := graph.node(value).annotation(Interval)) is not None:
            low = min(seen[value][0], int(bounds.lo))
            seen[value] = (low, max(seen[value][1], int(bounds.hi)))
    return {value: range(low, high + 1) for value, (low, high) in seen.items()}


def _bits(magnitude: int) -> int:
    return max(1, int(magnitude).bit_length())


def integer_width(calibrated: range) -> tuple[int, bool]:
    """(width, signed) of the integer type concrete assigns to these values."""
    low, high = calibrated.start, calibrated.stop - 1
    if low < 0:
        return max((-low - 1).bit_length(), high.bit_length()) + 1, True
    return _bits(high), False


def relu_lookup(spread: int) -> LookupOp:
    """relu on every integer of the width that holds [-spread, spread]: the lookup of
    max(a, b) = a + relu(b - a) for integers a, b at most `spread` apart."""
    width, _ = integer_width(range(-spread, spread + 1))
    domain = np.arange(-(1 << (width - 1)), 1 << (width - 1), dtype=np.int64)
    return LookupOp.tabulate(domain, np.maximum(domain, 0))


def max_of(graph: Graph, a: ValueId, b: ValueId, relu: LookupOp, at: Location) -> ValueId:
    """max(a, b) = a + relu(b - a): exact, one lookup of the difference."""
    difference = graph.add(SubOp(), [b, a], result_type(SubOp(), graph, b, a), at)
    rectified = graph.add(relu, [difference], result_type(relu, graph, difference), at)
    return graph.add(AddOp(), [a, rectified], result_type(AddOp(), graph, a, rectified), at)
