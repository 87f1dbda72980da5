"""canonicalize: algebraic identities and layout no-ops, from one table of rewrite rules.

Applies to: any module. Requires: types as `infer-shapes` establishes them; constants
folded (`fold-constants`) so that `x + (0 * c)` is seen as `x + 0`.
Establishes: no rule of `RULES` applies anywhere (the table is run to a fixpoint by
`rewrite_to_fixpoint`): identities on `arith.*` (x+0, x*1, x-0, x/1, -(-x)) are gone,
no reshape keeps its shape, no transpose is the identity or follows a transpose; a
gemm has alpha = 1 and trans_b = false where its weights B are constant, beta = 1
where its bias C is, and no all-zero bias. A rule applies only where the result type
(shape, element type, secrecy) stays identical: `x + zeros` of a larger shape
broadcasts x and stays. A rewritten node keeps its value, location and annotations;
new constants take its location; nodes a rewrite leaves without users are erased.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.graph import Module
from fhec.ir.ops.elementwise import AddOp, DivOp, MulOp, NegOp, SubOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.shape import ReshapeOp, TransposeOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import Build, Match, Replacement, Rule, rewrite_to_fixpoint


def _identity_transpose(m: Match) -> Replacement:
    perm = m.op_as(TransposeOp).perm
    return m.x if perm == tuple(range(len(perm))) else None


def _transpose_of_transpose(m: Match) -> Replacement:
    # Result axis i of the outer transpose is axis inner.perm[outer.perm[i]] of x.
    if not m.from_op(0, TransposeOp):
        return None
    inner, outer = m.producer(0), m.op_as(TransposeOp)
    assert isinstance(inner, TransposeOp)
    return Build(TransposeOp(tuple(inner.perm[p] for p in outer.perm)), (m.inner(0),))


def _gemm_alpha_into_weights(m: Match) -> Replacement:
    gemm, weights = m.op_as(GemmOp), m.constant(1)
    if gemm.alpha == 1.0 or weights is None:
        return None
    scaled = m.new_constant((gemm.alpha * weights).astype(weights.dtype))
    return Build(replace(gemm, alpha=1.0), (m.x, scaled, *m.operands[2:]))


def _gemm_beta_into_bias(m: Match) -> Replacement:
    gemm = m.op_as(GemmOp)
    bias = m.constant(2) if len(m.operands) == 3 else None
    if gemm.beta == 1.0 or bias is None:
        return None
    scaled = m.new_constant((gemm.beta * bias).astype(bias.dtype))
    return Build(replace(gemm, beta=1.0), (m.x, m.y, scaled))


def _gemm_untranspose_weights(m: Match) -> Replacement:
    gemm, weights = m.op_as(GemmOp), m.constant(1)
    if not gemm.trans_b or weights is None:
        return None
    untransposed = m.new_constant(np.ascontiguousarray(weights.T))
    return Build(replace(gemm, trans_b=False), (m.x, untransposed, *m.operands[2:]))


def _gemm_drop_zero_bias(m: Match) -> Replacement:
    if len(m.operands) != 3 or not m.is_splat(2, 0):
        return None
    return Build(replace(m.op_as(GemmOp), beta=1.0), (m.x, m.y))


# One line per identity, read as the math. The driver keeps a rewrite only when the
# result type stays the same, which is the broadcasting / dtype / secrecy guard.
RULES: tuple[Rule, ...] = (
    Rule(AddOp, lambda m: m.x if m.is_splat(1, 0) else None),  # x + 0 -> x
    Rule(AddOp, lambda m: m.y if m.is_splat(0, 0) else None),  # 0 + x -> x
    Rule(SubOp, lambda m: m.x if m.is_splat(1, 0) else None),  # x - 0 -> x
    Rule(MulOp, lambda m: m.x if m.is_splat(1, 1) else None),  # x * 1 -> x
    Rule(MulOp, lambda m: m.y if m.is_splat(0, 1) else None),  # 1 * x -> x
    Rule(DivOp, lambda m: m.x if m.is_splat(1, 1) else None),  # x / 1 -> x
    Rule(NegOp, lambda m: m.inner(0) if m.from_op(0, NegOp) else None),  # -(-x) -> x
    # reshape(x) -> x when x has the shape already (the type guard checks it)
    Rule(ReshapeOp, lambda m: m.x),
    # reshape(reshape(x)) -> reshape(x): row-major order makes the inner one moot
    Rule(ReshapeOp, lambda m: Build(m.op, (m.inner(0),)) if m.from_op(0, ReshapeOp) else None),
    Rule(TransposeOp, _identity_transpose),  # transpose(x, [0, 1, ...]) -> x
    # transpose(transpose(x, p), q) -> transpose(x, p[q])
    Rule(TransposeOp, _transpose_of_transpose),
    Rule(GemmOp, _gemm_alpha_into_weights),  # gemm{alpha}(a, B) -> gemm(a, alpha*B)
    Rule(GemmOp, _gemm_beta_into_bias),  # gemm{beta}(a, b, C) -> gemm(a, b, beta*C)
    Rule(GemmOp, _gemm_untranspose_weights),  # gemm{trans_b}(a, B) -> gemm(a, B.T)
    Rule(GemmOp, _gemm_drop_zero_bias),  # gemm(a, b, 0) -> gemm(a, b)
)


@register_pass
@dataclass(frozen=True, slots=True)
class Canonicalize(Pass):
    name = "canonicalize"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        rewrite_to_fixpoint(module.function, RULES)
