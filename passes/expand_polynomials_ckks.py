"""expand-polynomials-ckks: each `poly.chebyshev` becomes additions and products.

Applies to: `poly.chebyshev` nodes (from `approximate-activations`). Requires: nothing.
Establishes: no `poly.chebyshev` is left; each became arith.add / arith.sub /
arith.mul nodes (and scalar constants) at the polynomial's location, in the
baby-step giant-step form of the Chebyshev series (Han & Ki 2020; Bossuat et al.,
Eurocrypt 2021): the babies T_1..T_{m-1} (m = 2**ceil(l/2), l = bit length of the
degree) and the giants T_m, T_2m, ... come from T_2k = 2 T_k^2 - 1 and
T_(a+b) = 2 T_a T_b - T_(a-b), each at the least depth (ceil(log2 i) products);
the series is split recursively, p = q * T_(2^k) + r, down to baby-sized pieces
that are linear combinations of the babies. The babies are T_1..T_3 (T_1 below degree
4), and a combination's T_3 term is folded into the product T_3 is made of, so the
scalar coefficients cost no level of their own: a degree-d series takes
ceil(log2(d + 1)) levels, the least any evaluation can (degree 7: 3; it took 4 with
the coefficients' level), at the price of one product per combination holding T_3
(d/4 of them) instead of the larger baby sets' sqrt(d). One more level maps [lo, hi]
onto [-1, 1] -- unless the input comes from a Gemm used nowhere else, which then
computes the mapped value itself (its weights and bias scaled), for free.
Every new node carries the exact #range of the polynomial it computes on [lo, hi];
the last one takes over the `#approx` annotation (its slope then taken with respect to
u where the Gemm computes u). All new nodes keep the activation's location: the error
bound (backends/ckks/error_model.py) finds a polynomial's nodes by it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fhec.ir.graph import Function, Module, ValueId
from fhec.ir.interval import DotMagnitude, Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import AddOp, MulOp, SubOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.poly import (
    Approximation,
    ChebyshevOp,
    cheb_add,
    cheb_mul,
    cheb_sub,
    series_range,
)
from fhec.ir.types import TensorType
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.rewrite import add_constant

Series = np.ndarray  # Chebyshev coefficients in u, the input mapped onto [-1, 1]
# The babies T_1..T_3 (T_1 alone below degree 4): every linear combination of them then
# fits in depth 2 (see _Builder.combination), so the whole series in ceil(log2(d + 1)).
BABY_STEPS = 4


@register_pass
@dataclass(frozen=True, slots=True)
class ExpandPolynomialsCkks(Pass):
    name = "expand-polynomials-ckks"
    kind = PassKind.TRANSFORM
    fold_into_gemm: bool = True  # let a Gemm producing the input compute the mapped input

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        for value in function.graph.topological_order():
            op = function.graph.node(value).op
            if isinstance(op, ChebyshevOp):
                _expand(function, value, op, self.fold_into_gemm)


@dataclass(slots=True)
class _Term:
    value: ValueId
    series: Series  # what the value is, as a Chebyshev series in u


class _Builder:
    """Emits arith nodes at one location, tracking each one's series in u."""

    def __init__(self, function: Function, type_: TensorType, location: Location) -> None:
        self.function, self.type, self.location = function, type_, location
        self.powers: dict[int, _Term] = {}

    def emit(self, op: Op, operands: list[ValueId], series: Series) -> _Term:
        graph = self.function.graph
        bounds = series_range(series, -1.0, 1.0, -1.0, 1.0)
        value = graph.add(op, operands, self.type, self.location, (bounds,))
        return _Term(value, series)

    def constant(self, number: float) -> ValueId:
        array = np.asarray(number, dtype=self.type.dtype.numpy)
        return add_constant(self.function.graph, array, self.location)

    def mul(self, a: _Term, b: _Term) -> _Term:
        return self.emit(MulOp(), [a.value, b.value], cheb_mul(a.series, b.series))

    def scale(self, a: _Term, factor: float) -> _Term:
        return self.emit(MulOp(), [a.value, self.constant(factor)], a.series * factor)

    def double(self, a: _Term) -> _Term:  # 2a as a + a: no product, no level
        return self.emit(AddOp(), [a.value, a.value], a.series * 2.0)

    def add(self, a: _Term, b: _Term) -> _Term:
        return self.emit(AddOp(), [a.value, b.value], cheb_add(a.series, b.series))

    def sub(self, a: _Term, b: _Term) -> _Term:
        return self.emit(SubOp(), [a.value, b.value], cheb_sub(a.series, b.series))

    def shift(self, a: _Term, number: float) -> _Term:
        if number == 0.0:
            return a
        return self.emit(AddOp(), [a.value, self.constant(number)], cheb_add(a.series, [number]))

    # -- the Chebyshev basis ----------------------------------------------------
    def power(self, index: int) -> _Term:
        """T_index(u), each at the least multiplicative depth: ceil(log2 index)."""
        if index not in self.powers:
            half = 1 << (index.bit_length() - 1)  # the largest power of two below index
            if half == index:
                square = self.double(self.mul(self.power(index // 2), self.power(index // 2)))
                self.powers[index] = self.shift(square, -1.0)  # T_2k = 2 T_k^2 - 1
            else:  # T_(a+b) = 2 T_a T_b - T_(a-b)
                product = self.double(self.mul(self.power(half), self.power(index - half)))
                rest = 2 * half - index
                if rest == 0:
                    self.powers[index] = self.shift(product, -1.0)
                else:
                    self.powers[index] = self.sub(product, self.power(rest))
        return self.powers[index]

    def series(self, coefficients: Series, baby: int) -> _Term:
        coefficients = np.trim_zeros(coefficients, "b")
        degree = len(coefficients) - 1
        if degree < baby:
            return self.combination(coefficients)
        giant = 1 << (degree.bit_length() - 1)
        quotient, remainder = _divide(coefficients, giant)
        quotient = np.trim_zeros(quotient, "b")
        if len(quotient) == 1:  # a constant times T_giant: one scalar product
            product = self.scale(self.power(giant), float(quotient[0]))
        else:
            product = self.mul(self.series(quotient, baby), self.power(giant))
        if not np.any(remainder):
            return product
        return self.add(product, self.series(remainder, baby))

    def combination(self, coefficients: Series) -> _Term:
        """c_0 + sum c_i T_i: scalar products (one level) added up; a T_3 term goes into
        the product T_3 is made of, so the sum is no deeper than T_2's and T_3's own depth
        (2): c_2 T_2 + c_3 T_3 = (2 c_3 T_1 + c_2) T_2 - c_3 T_1, one product in place
        of T_3's, and no level for c_3."""
        if len(coefficients) == 4 and coefficients[3]:
            c0, c1, c2, c3 = (float(c) for c in coefficients)
            factor = self.shift(self.scale(self.power(1), 2.0 * c3), c2)
            folded = self.mul(factor, self.power(2))
            if c1 == c3:
                return self.shift(folded, c0)
            rest = self.scale(self.power(1), c1 - c3)
            return self.shift(self.add(folded, rest), c0)
        terms = [self.scale(self.power(i), c) for i, c in enumerate(coefficients) if i and c]
        if not terms:  # a constant: keep it a function of the input (secret) all the same
            terms = [self.scale(self.power(1), 0.0)]
        total = terms[0]
        for term in terms[1:]:
            total = self.add(total, term)
        return self.shift(total, float(coefficients[0]) if len(coefficients) else 0.0)


def _divide(coefficients: Series, giant: int) -> tuple[Series, Series]:
    """q, r with p = q * T_giant + r, deg r < giant, from T_(g+j) = 2 T_g T_j - T_(g-j)."""
    high = coefficients[giant:]
    quotient = np.concatenate([[high[0]], 2.0 * high[1:]])
    remainder = np.array(coefficients[:giant], dtype=np.float64)
    for j in range(1, len(high)):
        remainder[giant - j] -= high[j]
    return quotient, remainder


def _expand(function: Function, value: ValueId, op: ChebyshevOp, fold: bool) -> None:
    graph = function.graph
    node = graph.node(value)
    builder = _Builder(function, node.type, node.location)
    source = graph.operands(value)[0]
    folded = fold and _fold_map_into_gemm(function, source, value, op)
    if folded:
        builder.powers[1] = _Term(source, np.array([0.0, 1.0]))
    else:
        builder.powers[1] = _mapped_input(builder, source, op)
    baby = BABY_STEPS if op.degree > 3 else 2
    result = builder.series(np.array(op.coefficients, dtype=np.float64), baby)
    # The slope is with respect to what the expansion reads: u where the Gemm computes it.
    factor = (op.hi - op.lo) / 2.0 if folded else 1.0
    kept = tuple(
        replace(a, slope=a.slope * factor) for a in node.annotations if isinstance(a, Approximation)
    )
    bounds = series_range(result.series, -1.0, 1.0, -1.0, 1.0)
    graph.set_node(result.value, replace(graph.node(result.value), annotations=(*kept, bounds)))
    function.replace_uses(value, result.value)
    graph.remove(value)


def _mapped_input(builder: _Builder, source: ValueId, op: ChebyshevOp) -> _Term:
    """u = (2x - lo - hi) / (hi - lo): one scalar product and one addition (none on
    [-1, 1])."""
    half_width, center = (op.hi - op.lo) / 2.0, (op.hi + op.lo) / 2.0
    x = _Term(source, np.array([center, half_width]))
    if half_width == 1.0 and center == 0.0:  # already on [-1, 1] (a composite's later stages)
        return x
    return builder.shift(builder.scale(x, 1.0 / half_width), -center / half_width)


def _fold_map_into_gemm(
    function: Function, source: ValueId, user: ValueId, op: ChebyshevOp
) -> bool:
    """Make a Gemm with constant weights that feeds only this polynomial compute u
    instead of x: u = factor * x + offset = (factor * alpha) A B + (factor * beta C + offset)."""
    graph = function.graph
    gemm = graph.node(source)
    operands = graph.operands(source)
    if not isinstance(gemm.op, GemmOp) or graph.users(source) != [(user, 0)]:
        return False
    if source in {v for _, v in function.outputs}:
        return False
    constants = [graph.node(o).op for o in operands[1:]]
    if not all(isinstance(c, ConstantOp) for c in constants):
        return False
    factor, offset = 2.0 / (op.hi - op.lo), -(op.hi + op.lo) / (op.hi - op.lo)
    bias = np.zeros(())
    if len(constants) == 2:
        assert isinstance(constants[1], ConstantOp)
        bias = gemm.op.beta * constants[1].value.array.astype(np.float64)
    mapped_bias = np.asarray(factor * bias + offset, dtype=gemm.type.dtype.numpy)
    new_bias = add_constant(graph, mapped_bias, gemm.location)
    annotations = [a for a in gemm.annotations if not isinstance(a, Interval | DotMagnitude)]
    dot = gemm.annotation(DotMagnitude)  # its sums scale with alpha
    if dot is not None:
        annotations.append(DotMagnitude(dot.abs_max * abs(factor)))
    old_range = gemm.annotation(Interval)
    if old_range is not None:
        annotations.append(Interval(old_range.lo * factor + offset, old_range.hi * factor + offset))
    new_op = replace(gemm.op, alpha=gemm.op.alpha * factor, beta=1.0)
    ordered = tuple(sorted(annotations, key=lambda a: a.key))
    graph.set_node(source, replace(gemm, op=new_op, annotations=ordered))
    graph.set_operands(source, [operands[0], operands[1], new_bias])
    if len(operands) == 3 and not graph.users(operands[2]):
        graph.remove(operands[2])
    return True
