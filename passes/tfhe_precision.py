"""round-accumulators' mixed precision: how many bits each lookup reads.

Every lookup first reads `bits` bits of its accumulator. While the rounding's error
on the calibration samples is above `error_target`, a greedy search widens by one
bit (up to `max_bits`) the lookup whose widening lowers that error the most per unit
of estimated cost; it stops at the target, or when no widening lowers the error.

- Error: the relative RMS difference, over the calibration samples, between the
  module's outputs with the rounding and without it (the rounding's own error, with
  exact rounding; concrete's approximate rounding adds a step at times).
- Cost: a lookup reading b bits costs about 4^b per element: concrete's complexity
  of the golden digits MLP grows 4.6 times from 5-bit to 6-bit lookups and 2.8 times
  from 6 to 7 bits (its table and its parameters both grow with b).

What it sees: the module and the calibration samples only (never held-out data).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fhec.ir.graph import Module, ValueId
from fhec.ir.interpreter import evaluate
from fhec.ir.ops.tfhe import RoundOp
from fhec.passes.base import Sample

Lsbs = Callable[[ValueId, int], int]  # the low bits a lookup drops to read b bits


def insert_rounding(module: Module, lsbs: dict[ValueId, int], approximate: bool) -> None:
    """Each lookup in `lsbs` reads its input with that many low bits rounded off."""
    graph = module.graph
    for lookup, dropped in lsbs.items():
        if dropped == 0:
            continue
        source = graph.operands(lookup)[0]
        location = graph.node(source).location
        rounded = graph.add(
            RoundOp(dropped, approximate), [source], graph.node(source).type, location
        )
        graph.set_operands(lookup, [rounded])


def choose_bits(
    module: Module,
    samples: Sequence[Sample],
    start: dict[ValueId, int],
    lsbs: Lsbs,
    max_bits: int,
    error_target: float,
) -> dict[ValueId, int]:
    """The bits each lookup reads (see the module docstring); `start` holds the base."""
    exact = _outputs(module, samples)
    elements = {lookup: module.graph.node(lookup).type.size for lookup in start}

    def error(bits: dict[ValueId, int]) -> float:
        rounded = module.copy()
        insert_rounding(rounded, {lk: lsbs(lk, b) for lk, b in bits.items()}, False)
        return _relative_error(_outputs(rounded, samples), exact)

    bits, current = dict(start), error(start)
    while current > error_target:
        gains: dict[ValueId, tuple[float, float]] = {}
        for lookup in (lk for lk, b in bits.items() if b < max_bits):
            widened = error({**bits, lookup: bits[lookup] + 1})
            cost = elements[lookup] * 3 * 4 ** bits[lookup]  # 4^(b+1) - 4^b
            gains[lookup] = ((current - widened) / cost, widened)
        if not gains or max(g for g, _ in gains.values()) <= 0.0:
            break
        best = max(gains, key=lambda lk: gains[lk][0])
        bits[best] += 1
        current = gains[best][1]
    return bits


def _outputs(module: Module, samples: Sequence[Sample]) -> np.ndarray:
    pieces = []
    for sample in samples:
        outputs = evaluate(module, sample)
        pieces.append(np.concatenate([np.ravel(v).astype(np.float64) for v in outputs.values()]))
    return np.stack(pieces)


def _relative_error(outputs: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.sqrt(np.mean(exact**2)))
    return float(np.sqrt(np.mean((outputs - exact) ** 2))) / (scale if scale > 0 else 1.0)
