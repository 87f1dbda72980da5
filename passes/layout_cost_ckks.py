"""The cost model of pack-slots-ckks{layout=auto}: which layout computes a request of
`samples` samples in less time.

Both layouts are priced on the module as pack-slots-ckks receives it, by the SEAL
operations each would run, weighted by their time (milliseconds at N = 16384, one core,
profiled on the golden MLP; only the ratios matter):

- batch (one sample per slot): a value of n elements per sample is n ciphertexts, so
  every op runs n times; a linear map y = x @ A runs one plaintext product and one
  addition per nonzero of A (zero weights cost nothing) and one rescale per output;
  ONE run serves up to `SLOTS` samples (N = 8192's 4096 slots, the fewest any N has).
- single (one ciphertext per sample): every op runs once; a linear map runs its
  Halevi-Shoup diagonals: one rotation per baby and giant step its nonzero diagonals use
  (`ckks.matvec_diagonal`), a product and an addition per nonzero diagonal, one rescale;
  ONE run per sample.

A product of two ciphertexts pays its relinearization and rescale; a product by a
constant its rescale. Layout moves (reshapes, float casts) are free in both. The model
leaves out levels (both layouts go equally deep) and the single layout's stacked first
layer (cheaper than priced). Used only where every encrypted op has a single-layout
form (otherwise the batch layout is the only one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhec.ir.graph import Function, Graph, ValueId
from fhec.ir.ops import ckks
from fhec.ir.ops.core import InputOp
from fhec.passes.pack_single_ckks import (
    ELEMENTWISE,
    baby_steps,
    is_linear_map,
    layout_period,
    unsupported,
)
from fhec.passes.single_linear_ckks import affine_map, gemm_map

ROTATION = 17.0  # rotate_vector: a key switch
PRODUCT = 24.0  # multiply + relinearize (a key switch) + rescale
PLAIN_PRODUCT = 0.75  # multiply_plain
RESCALE = 4.0  # rescale_to_next
ADDITION = 0.4  # add / add_plain / sub
SLOTS = 4096  # the samples one batch-layout run holds, at least


@dataclass(frozen=True, slots=True)
class LayoutCosts:
    batch: float  # estimated milliseconds for the request, batch layout
    single: float  # the same, single-sample layout

    @property
    def cheaper(self) -> str:
        return "single" if self.single < self.batch else "batch"


def choose_layout(function: Function, samples: int) -> tuple[str, LayoutCosts | None]:
    """`layout=auto`'s choice for requests of `samples` samples, and the two estimates
    (None where the single layout cannot compute the module)."""
    if unsupported(function) is not None:
        return "batch", None
    costs = layout_costs(function, samples)
    return costs.cheaper, costs


def layout_costs(function: Function, samples: int) -> LayoutCosts:
    graph = function.graph
    period = layout_period(function)
    batch = single = 0.0
    for value in graph.topological_order():
        node = graph.node(value)
        if not node.type.secret or isinstance(node.op, InputOp):
            continue
        elements = node.type.size  # the batch axis is 1 here (the single layout's rule)
        if is_linear_map(graph, value, node) or node.op.name in ("linalg.gemm", "linalg.matmul"):
            matrix = _matrix(graph, value)
            batch += np.count_nonzero(matrix) * (PLAIN_PRODUCT + ADDITION)
            batch += matrix.shape[1] * RESCALE
            single += _matvec_cost(matrix, period)
        elif node.op.name in ELEMENTWISE:
            each = _elementwise_cost(graph, value)
            batch += elements * each
            single += each
    return LayoutCosts(batch * math.ceil(samples / SLOTS), single * samples)


def _elementwise_cost(graph: Graph, value: ValueId) -> float:
    operands = graph.operands(value)
    secret = sum(graph.node(o).type.secret for o in operands)
    name = graph.node(value).op.name
    if name not in ("arith.mul", "arith.div"):
        return ADDITION
    if secret == 2:
        return PRODUCT
    return PLAIN_PRODUCT + RESCALE


def _matrix(graph: Graph, value: ValueId) -> np.ndarray:
    found = gemm_map(graph, value) or affine_map(graph, value)
    assert not isinstance(found, str), found  # unsupported() found every op computable
    return found.matrix


def _matvec_cost(matrix: np.ndarray, period: int) -> float:
    op = ckks.MatVecDiagonalOp(period, baby_steps(period))
    rotations = len(op.used_rotation_steps(matrix))
    diagonals = len(op.nonzero_diagonals(matrix))
    return rotations * ROTATION + diagonals * (PLAIN_PRODUCT + ADDITION) + RESCALE

