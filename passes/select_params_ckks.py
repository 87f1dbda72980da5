"""select-params-ckks: the smallest CKKS parameters that fit the circuit.

Applies to: modules after `insert-mod-switch-ckks`. Requires: every secret value has
a #range (or an interval rule from its operands' ranges). Establishes: every
`func.input` carries #ckks_params{poly_degree, coeff_bits, scale_bits, security}:

- depth L = the deepest level any value reaches; the chain is q0, L rescaling primes
  of the rescales' size w (the waterline), and the special key-switching prime;
- q0 is the least (>= 20 bits) under which every value still fits: a value at level l
  and scale 2**S with magnitude M lives under q0 * 2**(w * (L - l)), which must
  exceed 2**(S + guard_bits) * M (guard_bits of headroom for values a little past
  their calibrated range); the special prime is as large as the largest other one;
- N is the smallest power of two whose N/2 slots hold the batch and whose modulus
  bound admits log2(Q) = q0 + L*w + special at `security` bits, by the
  HomomorphicEncryption.org table (128 by default; 192 and 256 also; 0 turns the
  check off -- for tests, never for data that matters), or `poly_degree` if given.

When a waterline lower than the rescales' (down to `min_scale_bits`) lets a smaller N
fit, every scale, rescale and encoding is relabeled onto it (2**(k*w) -> 2**(k*w')).
When nothing fits, a CompileError says the depth needed, the depth available and
the deepest path's ONNX nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.errors import CompileError, FhecError, InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.ops import ckks
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.pack_single_ckks import single_layout_slots

DEGREES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
MIN_Q0_BITS = 20


@register_pass
@dataclass(frozen=True, slots=True)
class SelectParamsCkks(Pass):
    name = "select-params-ckks"
    kind = PassKind.TRANSFORM  # it may relabel scales (ops change)
    security: int = 128
    poly_degree: int = 0  # 0: the smallest that fits
    guard_bits: int = 2
    # A lower waterline may buy a smaller N (half the memory and time per operation);
    # no lower than this, where CKKS noise starts to rival the approximation errors.
    min_scale_bits: int = 28

    def __post_init__(self) -> None:
        if self.security not in ckks.SECURITY_LEVELS:
            raise FhecError(
                f"select-params-ckks: security must be one of {ckks.SECURITY_LEVELS}, "
                f"got {self.security}",
                hint="0 turns the security check off (tests only)",
            )
        if self.poly_degree and self.poly_degree not in DEGREES:
            raise FhecError(f"select-params-ckks: poly_degree must be 0 or one of {DEGREES}")

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        states = ckks_states(graph, self.name)
        inputs = [v for v in graph if isinstance(graph.node(v).op, InputOp)]
        secret_inputs = [v for v in inputs if v in states]
        if not secret_inputs:
            return  # nothing is encrypted: no parameters to choose
        depth = max(s.level for s in states.values())
        width = _rescale_bits(graph, states[secret_inputs[0]].scale_bits, self.name)
        batch = graph.node(secret_inputs[0]).type.shape[0]
        batch = max(batch, single_layout_slots(graph, secret_inputs))  # pack_single_ckks
        smaller = self._smaller_scale(graph, states, depth, width, batch)
        if smaller is not None:
            states = _relabel_scales(graph, states, width, smaller)
            width = smaller
        q0 = self._q0_bits(graph, states, depth, width)
        bits = (q0, *([width] * depth), max(q0, width))
        degree = self._degree(sum(bits), batch, graph, states, depth, width, q0)
        params = ckks.CkksParams(degree, bits, states[secret_inputs[0]].scale_bits, self.security)
        for value in inputs:
            graph.set_node(value, graph.node(value).with_annotation(params))
        context.notes[self.name] = (
            f"N={degree}, primes {list(bits)} ({sum(bits)} bits), depth {depth}, "
            f"{'no security check' if not self.security else f'{self.security}-bit security'}"
        )

    def _smaller_scale(
        self,
        graph: Graph,
        states: dict[ValueId, ckks.CkksState],
        depth: int,
        width: int,
        batch: int,
    ) -> int | None:
        """A waterline below `width` (>= min_scale_bits) with which a smaller N fits, the
        largest such for the smallest such N; None to keep `width`. Only for circuits
        whose every scale is a multiple of the waterline (what insert-rescale makes)."""
        if not self.min_scale_bits or self.poly_degree or not self.security:
            return None
        if any(s.scale_bits % width for s in states.values()):
            return None
        limits = ckks.MAX_LOG_Q[self.security]
        for degree in (d for d in DEGREES if d // 2 >= batch and d in limits):
            for bits in range(width, self.min_scale_bits - 1, -1):
                relabeled = _relabel_scales(graph, states, width, bits, annotate=False)
                try:
                    q0 = self._q0_bits(graph, relabeled, depth, bits)
                except CompileError:
                    continue
                if q0 + depth * bits + max(q0, bits) <= limits[degree]:
                    return None if bits == width else bits
        return None

    def _q0_bits(
        self, graph: Graph, states: dict[ValueId, ckks.CkksState], depth: int, width: int
    ) -> int:
        needed = MIN_Q0_BITS
        magnitudes = value_magnitudes(graph, states, self.name)
        for value, state in states.items():
            bits = state.scale_bits + self.guard_bits + math.log2(max(magnitudes[value], 1.0))
            needed = max(needed, math.ceil(bits) - width * (depth - state.level))
        if needed > ckks.MAX_PRIME_BITS:
            culprit = max(
                states,
                key=lambda v: (
                    states[v].scale_bits
                    + math.log2(max(magnitudes[v], 1.0))
                    - width * (depth - states[v].level)
                ),
            )
            node = graph.node(culprit)
            raise CompileError(
                f"a value at scale 2^{states[culprit].scale_bits} with magnitude up to "
                f"{magnitudes[culprit]:.3g} needs a {needed}-bit last prime; SEAL's limit is 60",
                node.location,
                hint="lower pack-slots-ckks{scale_bits=...}",
            )
        return needed

    def _degree(
        self,
        log_q: int,
        batch: int,
        graph: Graph,
        states: dict[ValueId, ckks.CkksState],
        depth: int,
        width: int,
        q0: int,
    ) -> int:
        candidates = [self.poly_degree] if self.poly_degree else list(DEGREES)
        for degree in candidates:
            limit = ckks.MAX_LOG_Q.get(self.security, {}).get(degree)
            fits_security = self.security == 0 or (limit is not None and log_q <= limit)
            if degree // 2 >= batch and fits_security and (degree >= 2048 or self.security):
                return degree
        if batch > max(candidates) // 2:
            raise CompileError(
                f"a batch of {batch} samples does not fit {max(candidates) // 2} slots",
                hint="compile with a smaller batch size",
            )
        largest = (
            max(d for d in candidates if d in ckks.MAX_LOG_Q[self.security])
            if self.security
            else max(candidates)
        )
        room = ckks.MAX_LOG_Q[self.security][largest] if self.security else log_q
        available = max((room - q0 - max(q0, width)) // width, 0)
        path = " -> ".join(deepest_path(graph, states))
        raise CompileError(
            f"the circuit needs multiplicative depth {depth} ({log_q} modulus bits at "
            f"{width}-bit scale), and N={largest} allows depth {available} at "
            f"{self.security}-bit security; deepest path: {path}",
            hint="lower approximate-activations{max_degree=...} or the scale (pack-slots-ckks"
            "{scale_bits=...}), or make the model shallower",
        )


def _relabel_scales(
    graph: Graph,
    states: dict[ValueId, ckks.CkksState],
    old: int,
    new: int,
    *,
    annotate: bool = True,
) -> dict[ValueId, ckks.CkksState]:
    """Every scale 2**(k * old) becomes 2**(k * new): the same circuit on a lower
    waterline (rescales by `new`-bit primes, plaintexts encoded at the new scales)."""
    relabeled = {v: replace(s, scale_bits=s.scale_bits // old * new) for v, s in states.items()}
    if not annotate:
        return relabeled
    for value, state in relabeled.items():
        node = graph.node(value)
        op = node.op
        if isinstance(op, ckks.RescaleOp):
            op = replace(op, bits=op.bits // old * new)
        elif isinstance(op, ckks.EncodeOp):
            op = replace(op, scale_bits=op.scale_bits // old * new)
        graph.set_node(value, replace(node, op=op).with_annotation(state))
    return relabeled


def _rescale_bits(graph: Graph, default: int, pass_name: str) -> int:
    ops = [graph.node(v).op for v in graph]
    sizes = {op.bits for op in ops if isinstance(op, ckks.RescaleOp)}
    if len(sizes) > 1:
        raise InternalCompilerError(f"rescales by different prime sizes {sorted(sizes)}", pass_name)
    return sizes.pop() if sizes else default


def value_magnitudes(
    graph: Graph, states: dict[ValueId, ckks.CkksState], pass_name: str
) -> dict[ValueId, float]:
    """max |value| of every scheme value: its #range, else its op's interval rule."""
    bounds: dict[ValueId, Interval] = {}
    for value in graph.topological_order():
        node = graph.node(value)
        known = node.annotation(Interval)
        if known is None and isinstance(node.op, ConstantOp):
            known = Interval.of(node.op.value.array)
        if known is None:
            operands = graph.operands(value)
            if all(o in bounds for o in operands):
                constants = [_constant(graph, o) for o in operands]
                types = [graph.node(o).type for o in operands]
                known = node.op.interval_with_types(
                    [bounds[o] for o in operands], constants, types
                )
        if known is not None:
            bounds[value] = known
        elif value in states:
            raise CompileError(
                f"cannot bound the values of {node.op.name}, so no parameters can be chosen",
                node.location,
                hint="give calibration data (fhec compile --calibration DATA.npz)",
            )
    return {v: bounds[v].magnitude for v in states}


def _constant(graph: Graph, value: ValueId) -> np.ndarray | None:
    op = graph.node(value).op
    return op.value.array if isinstance(op, ConstantOp) else None


def deepest_path(graph: Graph, states: dict[ValueId, ckks.CkksState]) -> list[str]:
    """The ONNX nodes along the path to the deepest value, first to last."""
    value = max(states, key=lambda v: (states[v].level, -v))
    described: list[str] = []
    while True:
        location = graph.node(value).location.describe()
        if not described or described[-1] != location:
            described.append(location)
        secret = [o for o in graph.operands(value) if o in states and graph.node(o).type.secret]
        if not secret:
            break
        value = max(secret, key=lambda v: states[v].level)
    return described[::-1]
