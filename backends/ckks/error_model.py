"""The predicted error bound of every output: |CKKS result - reference result|.

Three sources add up, propagated node by node with the values' ranges:

- approximation: each polynomial's `#approx` max error on its interval; the error
  already in its input comes out multiplied by the polynomial's largest slope there
  (the products and sums it is made of add only their own CKKS noise: bounding the
  input's error through each of them would multiply it by the Chebyshev terms' sizes).
  A polynomial is the `#approx` node and the nodes at its location it is computed from,
  up to another polynomial's result or a linear map or layout move (how a decomposed
  MaxPool / Softmax computes a polynomial's input: those errors propagate in full);
- CKKS noise, as high-probability bounds (six standard deviations) on one slot of the
  canonical embedding, for SEAL's ternary secret (Hamming weight about 2N/3) and
  error deviation 3.2 (Cheon, Kim, Kim, Song, Asiacrypt 2017, section 3.4, in their
  probabilistic form): fresh encryption and encoding rounding, rescaling rounding
  (in rescales and in the scale-correcting modulus switches), key-switching in
  relinearization; and where two scales that drifted apart (by the primes' distance
  from powers of two) are relabeled to add them -- only off the waterline and twice
  it, where the evaluator's true scales do not meet exactly by construction;
- float32 rounding of the reference itself (one rounding per op, a polynomial being
  one op; a dot product's K roundings).

Propagation: a + b adds errors; a * b gives |a| e_b + |b| e_a + e_a e_b; a product by
constants scales by their magnitude (rows' absolute sums for a matrix). The bound
holds for inputs inside the calibrated ranges (the approximations hold only there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from fhec.backends.ckks.epilogue import client_values, epilogue_bounds
from fhec.backends.ckks.seal_context import SealContext
from fhec.ir.graph import Graph, Module, Node, ValueId
from fhec.ir.interval import DotMagnitude
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.poly import Approximation
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.select_params_ckks import value_magnitudes

SIGMA = 3.2  # SEAL's error distribution
TAIL = 6.0  # standard deviations
FLOAT32_UNIT = 2.0**-24  # unit roundoff of the reference's float32
NOT_COMPUTED = (ckks.RescaleOp, ckks.RelinearizeOp, ckks.ModSwitchOp, ckks.NegateOp)


class _Noise:
    """Per-slot noise bounds of one SEAL context, before division by the scale."""

    def __init__(self, context: SealContext) -> None:
        n = context.params.poly_degree
        weight = 2.0 * n / 3.0
        self.rounding = TAIL * math.sqrt(n / 24.0)  # rounding N coefficients to integers
        self.fresh = TAIL * SIGMA * math.sqrt(n / 2.0) + self.rounding
        self.rescale = TAIL * math.sqrt(n * (1.0 + weight) / 24.0)
        special, data = context.primes[-1], context.primes[:-1]
        self._switch = TAIL * SIGMA * n * max(data) / special / math.sqrt(24.0)
        self.drift = 2.0 * context.prime_drift() * max(context.params.depth, 1)

    def key_switch(self, primes: int) -> float:
        return self._switch * math.sqrt(primes) + self.rescale


def error_bounds(
    module: Module, context: SealContext, input_errors: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The predicted max |error| of each output, by name; outputs the client finishes
    carry their server values' bounds through the epilogue where it is Lipschitz, and
    labels (integer outputs) have none. `input_errors`: an error some inputs already
    carry, by name (trained weights after earlier steps), beside their encryption's."""
    graph = module.graph
    states = ckks_states(graph, "ckks", strict=True)
    magnitudes = value_magnitudes(graph, states, "ckks")
    noise = _Noise(context)
    regions = _polynomial_regions(graph)
    errors: dict[ValueId, float] = {}
    # Inside a polynomial: only the noise of its own operations (its input's error
    # counts once, at its end, through the polynomial's slope).
    inner: dict[ValueId, float] = {}
    # The part of an error that is a fraction of the value's own size, element by
    # element (the reference's float32 roundings): products by plaintexts keep it a
    # fraction, where a bound by the tensor's largest magnitude would multiply a large
    # element's rounding by another element's large factor (a Scaler's 1/std).
    relative: dict[ValueId, float] = {}
    for value in graph.topological_order():
        node = graph.node(value)
        if value not in states or isinstance(node.op, ckks.EncodeOp):
            continue
        region = regions.get(value)
        if region is None:
            error = _propagate(graph, value, states, magnitudes, errors, noise, context)
            if isinstance(node.op, InputOp) and input_errors:
                error += input_errors.get(node.op.input_name, 0.0)
        else:
            seen = _RegionErrors(errors, inner, region[0])
            error = _propagate(graph, value, states, magnitudes, seen, noise, context)
        if region is None:
            error = _relative_part(graph, value, error, magnitudes, relative)
        approximation = node.annotation(Approximation)
        # The reference rounds each op's result to float32 once; a polynomial stands for
        # one op, so its own products and sums add no roundings of the reference's.
        computed = not isinstance(node.op, (*NOT_COMPUTED, InputOp))  # inputs: same float32s
        if computed and (region is None or approximation is not None):
            error += FLOAT32_UNIT * magnitudes[value]
            relative[value] = relative.get(value, 0.0) + FLOAT32_UNIT
        if region is not None:
            inner[value] = error
            if approximation is not None:
                entry = max((errors[v] for v in region[1]), default=0.0)
                error += approximation.slope * entry + approximation.max_error
        errors[value] = error
    client = client_values(graph)
    bounds = {
        name: errors.get(value, 0.0) + FLOAT32_UNIT * magnitudes.get(value, 0.0)
        for name, value in module.function.outputs
        if value not in client
    }
    return {**bounds, **epilogue_bounds(module, errors)}


def _relative_part(
    graph: Graph,
    value: ValueId,
    error: float,
    magnitudes: dict[ValueId, float],
    relative: dict[ValueId, float],
) -> float:
    """`error` (from _propagate) where the operand's relative part passes through as a
    fraction of this value: products by plaintexts (|p_i| r |x_i| = r |p_i x_i|) and ops
    that keep the values; others' relative parts are already absolute in `error`."""
    op = graph.node(value).op
    operands = graph.operands(value)
    if not operands or operands[0] not in relative:
        return error
    source = operands[0]
    fraction = relative[source]
    if isinstance(op, ckks.MulPlainOp):
        factor = magnitudes[operands[1]]
        relative[value] = fraction
        return error - factor * fraction * magnitudes[source] + fraction * magnitudes[value]
    if isinstance(op, ckks.MatMulPlainOp):  # sum_k |w_k| r |x_k| = r sum_k |w_k x_k|
        worst = _row_sums(_constant(graph, operands[1])) * magnitudes[source]
        return error - fraction * (worst - dot_sums(graph.node(value), worst))
    if isinstance(op, NOT_COMPUTED):
        relative[value] = fraction
    return error


class _RegionErrors(dict[ValueId, float]):
    """The errors a polynomial's nodes see: their own noise, and 0 for its input."""

    def __init__(
        self, outer: dict[ValueId, float], inner: dict[ValueId, float], members: frozenset[ValueId]
    ) -> None:
        super().__init__()
        self.outer, self.inner, self.members = outer, inner, members

    def __contains__(self, value: object) -> bool:
        return value in (self.inner if value in self.members else self.outer)

    def __getitem__(self, value: ValueId) -> float:
        return self.inner[value] if value in self.members else 0.0


Region = tuple[frozenset[ValueId], frozenset[ValueId]]  # its nodes, its inputs


def _polynomial_regions(graph: Graph) -> dict[ValueId, Region]:
    """For each node of an expanded polynomial (the `#approx` node and the nodes at its
    location it is computed from), the polynomial's nodes and the secret values it reads."""
    found: dict[ValueId, Region] = {}
    for value in graph:
        node = graph.node(value)
        if node.annotation(Approximation) is None:
            continue
        members: set[ValueId] = set()
        entries: set[ValueId] = set()
        stack = [value]
        while stack:
            current = stack.pop()
            if current in members:
                continue
            members.add(current)
            for operand in graph.operands(current):
                producer = graph.node(operand)
                if not producer.type.secret:
                    continue
                if producer.location == node.location and not _ends_region(producer):
                    stack.append(operand)
                else:
                    entries.add(operand)
        region = (frozenset(members), frozenset(entries))
        for member in members:
            found[member] = region
    return found


def _ends_region(producer: Node) -> bool:
    """Values a polynomial reads that are not part of it even at its location: another
    polynomial's result, and the linear maps and layout moves that a decomposition
    (decompose-max-softmax-ckks) computes a polynomial's input with -- their errors
    are propagated in full and enter through the slope."""
    return (
        producer.annotation(Approximation) is not None
        or isinstance(producer.op, ckks.MatMulPlainOp)
        or producer.op.name in ckks.LAYOUT_OPS
    )


def _propagate(
    graph: Graph,
    value: ValueId,
    states: dict[ValueId, ckks.CkksState],
    magnitudes: dict[ValueId, float],
    errors: dict[ValueId, float],
    noise: _Noise,
    context: SealContext,
) -> float:
    op = graph.node(value).op
    operands = graph.operands(value)
    scale = 2.0 ** states[value].scale_bits
    if isinstance(op, InputOp):
        return noise.fresh / scale
    secret = [o for o in operands if o in errors]
    e = [errors[o] for o in secret]
    m = [magnitudes[o] for o in secret]
    if isinstance(op, ckks.AddOp | ckks.SubOp):
        waterline = context.params.scale_bits
        canonical = states[value].scale_bits in (waterline, 2 * waterline)
        return e[0] + e[1] + (0.0 if canonical else noise.drift * (m[0] + m[1]))
    if isinstance(op, ckks.AddPlainOp | ckks.SubPlainOp):
        return e[0] + noise.rounding / scale
    if isinstance(op, ckks.MulOp):
        return m[0] * e[1] + m[1] * e[0] + e[0] * e[1]
    if isinstance(op, ckks.MulPlainOp):
        plain = operands[1]
        factor = magnitudes[plain]  # a constant's, or a public input's calibrated range
        return factor * e[0] + m[0] * noise.rounding / 2.0 ** states[plain].scale_bits
    if isinstance(op, ckks.MatVecStackedOp):
        return _stacked_error(graph, value, op, states, magnitudes, e[0], noise, context)
    if isinstance(op, ckks.MatVecDiagonalOp):
        return _matvec_error(graph, value, op, states, magnitudes, e[0], noise, context)
    if isinstance(op, ckks.MatMulPlainOp):
        weights = _constant(graph, operands[1])
        plain_scale = 2.0 ** states[operands[1]].scale_bits
        rounding = m[0] * weights.shape[0] * 0.5 / plain_scale
        return _row_sums(weights) * e[0] + rounding + _reference_rounding(graph, value, m[0])
    if isinstance(op, ckks.RescaleOp):
        return e[0] + noise.rescale / scale
    if isinstance(op, ckks.ModSwitchOp):  # primes dropped and the drift relabeled, or a rescale
        before, after = states[operands[0]], states[value]
        drift = context.switch_drift(after.scale_bits, before.level, after.level)
        return e[0] + (noise.rescale / scale if drift is None else drift * m[0])
    if isinstance(op, ckks.RelinearizeOp):
        primes = context.params.depth + 1 - states[value].level
        return e[0] + noise.key_switch(primes) / scale
    if isinstance(op, ckks.ReduceAddOp):
        terms = graph.node(operands[0]).type.size // graph.node(value).type.size
        return terms * (e[0] + FLOAT32_UNIT * magnitudes[value])  # the reference's roundings
    if isinstance(op, ckks.SlotSumOp):
        # Every slot is summed (those past the samples hold zeros plus noise), and each
        # rotation's key switch adds its noise to a partial sum that later ones double.
        primes = context.params.depth + 1 - states[value].level
        samples = graph.node(operands[0]).type.shape[0]
        rounding = samples * FLOAT32_UNIT * magnitudes[value]  # the reference's
        rotations = context.slot_count * noise.key_switch(primes) / scale
        padding = _padding_error(graph, operands[0], states, magnitudes, errors, noise)
        if padding is None:  # no zeros known past the samples: every slot may err as much
            return context.slot_count * e[0] + rotations + rounding
        return samples * e[0] + (context.slot_count - samples) * padding + rotations + rounding
    return max(e)  # negate and layout ops move values without new error


def _matvec_error(
    graph: Graph,
    value: ValueId,
    op: ckks.MatVecDiagonalOp,
    states: dict[ValueId, ckks.CkksState],
    magnitudes: dict[ValueId, float],
    x_error: float,
    noise: _Noise,
    context: SealContext,
) -> float:
    """A diagonal mat-vec (single-sample layout) sums P products of a rotated x by a
    diagonal: x's error, plus one key switch per baby rotation (on x, at x's scale),
    times the rows' absolute sums; each diagonal's encoding rounding (a vector: the
    rounding of N coefficients, per slot) times |x|; one key switch per giant rotation
    (on a partial sum, at the product's scale); the reference's K float32 roundings."""
    x, encoded = graph.operands(value)
    weights = _constant(graph, encoded)
    primes = context.params.depth + 1 - states[x].level
    switch = noise.key_switch(primes)
    giant = op.period // op.baby_steps - 1
    rotated = x_error + switch / 2.0 ** states[x].scale_bits
    plain_scale = 2.0 ** states[encoded].scale_bits
    diagonals = min(op.period, weights.shape[0])  # a nonzero diagonal per column at most
    rounding = diagonals * magnitudes[x] * noise.rounding / plain_scale
    giant_switches = giant * switch / 2.0 ** states[value].scale_bits
    reference = _reference_rounding(graph, value, magnitudes[x])
    return _row_sums(weights) * rotated + rounding + giant_switches + reference


def _stacked_error(
    graph: Graph,
    value: ValueId,
    op: ckks.MatVecStackedOp,
    states: dict[ValueId, ckks.CkksState],
    magnitudes: dict[ValueId, float],
    x_error: float,
    noise: _Noise,
    context: SealContext,
) -> float:
    """A stacked mat-vec sums, over the P blocks, x (rotated by the client: a fresh
    encryption's error in every block) times one diagonal: x's error times the rows'
    absolute sums, the plaintext's rounding times |x| in each of the P blocks, one key
    switch per rotation (log2 P, at the product's scale), the reference's roundings."""
    x, encoded = graph.operands(value)
    primes = context.params.depth + 1 - states[x].level
    rotations = len(op.rotation_steps(context.slot_count))
    plain_scale = 2.0 ** states[encoded].scale_bits
    rounding = op.period * magnitudes[x] * noise.rounding / plain_scale
    switches = rotations * noise.key_switch(primes) / 2.0 ** states[value].scale_bits
    reference = _reference_rounding(graph, value, magnitudes[x])
    row_sums = _row_sums(_constant(graph, encoded))
    return row_sums * x_error + rounding + switches + reference


def _padding_error(
    graph: Graph,
    value: ValueId,
    states: dict[ValueId, ckks.CkksState],
    magnitudes: dict[ValueId, float],
    errors: dict[ValueId, float],
    noise: _Noise,
) -> float | None:
    """The error of `value` in the slots past the samples, where its exact value is 0:
    a product by the samples' mask (`ckks.encode_samples`) leaves rounding noise there;
    a product with an encrypted input (zeros there, plus noise) leaves that factor's
    error times the other's size. None when neither is known."""
    start = value
    while isinstance(graph.node(value).op, ckks.RescaleOp | ckks.RelinearizeOp):
        value = graph.operands(value)[0]
    carried = errors[start] - errors[value]  # the noise rescales and relinearizations add
    op = graph.node(value).op
    operands = graph.operands(value)
    if isinstance(op, ckks.MulPlainOp) and isinstance(
        graph.node(operands[1]).op, ckks.EncodeSamplesOp
    ):
        plain_scale = 2.0 ** states[operands[1]].scale_bits
        return carried + magnitudes[operands[0]] * noise.rounding / plain_scale
    if isinstance(op, ckks.MulOp):
        for padded, other in (operands, operands[::-1]):
            if _encrypted_samples(graph, padded):
                e_pad, e_other = errors[padded], errors[other]
                return carried + magnitudes[other] * e_pad + e_pad * e_other
    return None


def _encrypted_samples(graph: Graph, value: ValueId) -> bool:
    """An input holding samples (zeros past them), through ops that move or rescale it."""
    node = graph.node(value)
    while not isinstance(node.op, InputOp):
        if not isinstance(node.op, ckks.ModSwitchOp | ckks.RescaleOp) and (
            node.op.name not in ckks.LAYOUT_OPS
        ):
            return False
        value = graph.operands(value)[0]
        node = graph.node(value)
    return node.annotation(ckks.Replicated) is None


def dot_sums(node: Node, worst: float) -> float:
    """The largest sum_k |w_k x_k| of a product's outputs: its calibrated `#dot` where
    annotate-dot-magnitudes gave one, else `worst` (max_j sum_k |w_kj| times max |x|)."""
    dot = node.annotation(DotMagnitude)
    return worst if dot is None else min(dot.abs_max, worst)


def _reference_rounding(graph: Graph, value: ValueId, x_magnitude: float) -> float:
    """The reference's float32 roundings of a product's K-term dot products (Higham:
    K u sum_k |w_k x_k|), for x of magnitude `x_magnitude`."""
    weights = _constant(graph, graph.operands(value)[1])
    worst = _row_sums(weights) * x_magnitude
    return weights.shape[0] * FLOAT32_UNIT * dot_sums(graph.node(value), worst)


def _row_sums(weights: np.ndarray) -> float:
    """max_j sum_k |w_kj|: how much a product by the weights can grow an error."""
    return float(np.max(np.sum(np.abs(weights), axis=0)))


def _constant(graph: Graph, encoded: ValueId) -> np.ndarray:
    source = graph.node(graph.operands(encoded)[0]).op
    assert isinstance(source, ConstantOp), "matmul weights are constants (pack-slots-ckks)"
    return source.value.array.astype(np.float64)
