"""approximate-activations: each secret non-polynomial function becomes a polynomial.

Applies to: secret values computed by the ops in `APPROXIMATED` (activations and
math functions; any other operand must be a one-element constant, e.g. a PRelu slope).
Requires: `annotate-secrecy`; `annotate-ranges` for the input range of each such op
(from calibration data). Establishes: none of those ops is left on a secret value;
each became `poly.chebyshev` fitted to the op's own `evaluate` on its input range
[lo, hi] widened by `margin` times its width at each end (toward a pole, such as 0 for
a reciprocal, by that fraction of the distance to it, at most half): the interpolant
at Chebyshev points (`fit=chebyshev`), or the minimax polynomial by Remez exchange
(`fit=remez`, passes/remez.py; kept only where its measured error is the smaller).
The degree is the smallest of 1, 3, 7, 15, ... (2**k - 1: the most a depth allows)
whose largest error on that interval, measured on a dense grid, is at most
`error_target`; where `max_degree` cannot reach the target it is used anyway, and the
error it reaches is what `#approx{function, degree, lo, hi, max_error, slope}` records
(the report's error bound carries it; `slope` is the polynomial's largest |p'| on
[lo, hi], which the error bound uses to carry its input's error through it).

ReLU, LeakyReLU, PRelu and Abs are x * (even + odd * sign(x)); with `relu=composite`,
or `relu=auto` where one polynomial of `max_degree` misses the target and this does
not, sign becomes a composite of odd degree-7 polynomials (passes/composite_sign.py,
at most `sign_stages` of them): one `poly.chebyshev` per stage, then `arith.mul` by x,
which carries `#approx` with the composite's bound R |odd| max u |1 - s(u)|, taken
cell by cell on a fine grid of [0, 1].

The error target of each op follows the precision the outputs need: with
`output_error` > 0 (relative), an output whose calibrated magnitude is M may be off
by output_error * M; each approximated op gets an equal share of that, divided by
how much its own error can grow on the way to the output (the gain of the ops
between, from their interval rules). Where that gain is unknown, `error_target`
holds. An op with no range is a CompileError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import chebyshev

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Function, Graph, Module, Node, ValueId
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import MulOp, PowOp
from fhec.ir.ops.poly import Approximation, ChebyshevOp, cheb_eval, series_range
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.composite_sign import KinkedFit, best_composite, kink_parts
from fhec.passes.remez import remez
from fhec.passes.rewrite import erase_if_dead, operand_bounds

APPROXIMATED = frozenset(
    {
        "nn.relu", "nn.leaky_relu", "nn.prelu", "nn.sigmoid", "nn.tanh", "nn.gelu",
        "nn.softplus", "nn.elu", "nn.selu", "nn.clip",
        "arith.exp", "arith.erf", "arith.sqrt", "arith.abs", "arith.pow", "arith.log",
    }
)  # fmt: skip
# Interpolation-error grid: dense enough that the grid maximum is the true one to
# within a fraction of a percent for these degrees (<= 255).
GRID_POINTS = 20001
FITS = ("chebyshev", "remez")
RELU_METHODS = ("auto", "chebyshev", "composite")


@register_pass
@dataclass(frozen=True, slots=True)
class ApproximateActivations(Pass):
    name = "approximate-activations"
    kind = PassKind.TRANSFORM
    error_target: float = 1e-3  # largest absolute error wanted where no budget is known
    max_degree: int = 15  # ReLU on a wide range needs far more for little gain
    # The fit interval extends the calibrated one by this * width at each end: a few
    # dozen calibration samples miss ~10% of the range that held-out data reaches.
    margin: float = 0.2
    output_error: float = 0.1  # relative to each output's magnitude; 0: error_target only
    fit: str = "chebyshev"  # chebyshev (interpolation) | remez (minimax)
    # ReLU, LeakyReLU, PRelu, Abs (and the max of decompose-max-softmax-ckks): one
    # polynomial (chebyshev), a composite sign (composite), or the composite only where
    # the single polynomial of max_degree misses the error target and it does not (auto).
    # Composites are deep (3 levels a stage), so auto is asked for, not the default.
    relu: str = "chebyshev"
    sign_stages: int = 6  # at most this many degree-7 sign stages (3 levels each)

    def __post_init__(self) -> None:
        if not self.error_target > 0:
            raise FhecError(
                f"approximate-activations: error_target must be > 0, got {self.error_target}"
            )
        if not 1 <= self.max_degree <= 255:
            raise FhecError(
                f"approximate-activations: max_degree must be in 1..255, got {self.max_degree}"
            )
        if not self.output_error >= 0:
            raise FhecError(
                f"approximate-activations: output_error must be >= 0, got {self.output_error}"
            )
        if not self.margin >= 0:
            raise FhecError(f"approximate-activations: margin must be >= 0, got {self.margin}")
        for option, value, allowed in (
            ("fit", self.fit, FITS),
            ("relu", self.relu, RELU_METHODS),
        ):
            if value not in allowed:
                raise FhecError(
                    f"approximate-activations: {option} must be one of {', '.join(allowed)}, "
                    f"got {value!r}"
                )
        if not 1 <= self.sign_stages <= 8:
            raise FhecError(
                f"approximate-activations: sign_stages must be in 1..8, got {self.sign_stages}"
            )

    def run(self, module: Module, context: PassContext) -> None:
        function = module.function
        targets = self._targets(function)
        for value in function.graph.topological_order():
            node = function.graph.node(value)
            if node.op.name in APPROXIMATED and node.type.secret:
                note = self._approximate(function, value, node, targets.get(value))
                if note:
                    context.notes[f"{self.name}: {node.location.describe()}"] = note

    def _targets(self, function: Function) -> dict[ValueId, float]:
        """The error each approximated value may have (see the module docstring)."""
        if not self.output_error:
            return {}
        graph = function.graph
        approximated = [
            v for v in graph if graph.node(v).op.name in APPROXIMATED and graph.node(v).type.secret
        ]
        allowed = output_allowances(function, self.output_error)
        share = max(len(approximated), 1)
        return {v: allowed[v] / share for v in approximated if v in allowed}

    def _approximate(
        self, function: Function, value: ValueId, node: Node, target: float | None
    ) -> str:
        graph = function.graph
        operands = graph.operands(value)
        fixed = _fixed_operands(function, node, operands)
        fn = _function_of(node, fixed)
        lo, hi = self._interval(node, graph.node(operands[0]).annotation(Interval))
        target = self.error_target if target is None else target
        kink = kink_parts(node.op, fixed)
        coefficients, error = (
            self._fit(fn, lo, hi, target) if kink is None or self.relu != "composite" else ((), 0.0)
        )
        if (
            kink is not None
            and self.relu != "chebyshev"
            and (self.relu == "composite" or error > target)
        ):
            fraction = target / (max(-lo, hi) * abs(kink[1])) if kink[1] else np.inf
            composite, factor = best_composite(fraction, self.sign_stages)
            fit = KinkedFit(composite, *kink, lo, hi, factor)
            if self.relu == "composite" or fit.max_error <= target:
                return self._emit_kinked(function, value, node, fit, target)
        op = ChebyshevOp(tuple(float(c) for c in coefficients), lo, hi)
        output = series_range(op.coefficients, lo, hi, lo, hi)
        slope = series_slope(op.coefficients, lo, hi)
        approximation = Approximation(node.op.name, op.degree, lo, hi, error, slope)
        new = graph.add(op, [operands[0]], node.type, node.location, (approximation, output))
        _replace(function, value, new)
        if error > target:
            return (
                f"error target {target:g} not reached at degree {op.degree} "
                f"(max error {error:.3g} on [{lo:.4g}, {hi:.4g}])"
            )
        return ""

    def _emit_kinked(
        self, function: Function, value: ValueId, node: Node, fit: KinkedFit, target: float
    ) -> str:
        """x * (even + odd * s(x / R)): one poly.chebyshev per sign stage, then a product
        by x that carries #approx (the composite's bound, see passes/composite_sign.py)."""
        graph = function.graph
        x = graph.operands(value)[0]
        current, known = x, Interval(fit.lo, fit.hi)
        for coefficients, lo, hi in fit.stage_series():
            known = series_range(coefficients, known.lo, known.hi, lo, hi)
            op = ChebyshevOp(coefficients, lo, hi)
            current = graph.add(op, [current], node.type, node.location, (known,))
        ends = np.array([fit.lo, 0.0, fit.hi])  # a kinked function's extremes are at these
        ends = ends * (fit.even + fit.odd * np.sign(ends))
        output = Interval(float(ends.min()) - fit.max_error, float(ends.max()) + fit.max_error)
        approximation = Approximation(
            node.op.name, fit.composite.degree + 1, fit.lo, fit.hi, fit.max_error, fit.slope()
        )
        new = graph.add(MulOp(), [x, current], node.type, node.location, (approximation, output))
        _replace(function, value, new)
        stages = len(fit.composite.stages)
        missed = "" if fit.max_error <= target else f", missing the target {target:g}"
        return (
            f"composite sign of {stages} degree-7 stages (degree {fit.composite.degree}), "
            f"max error {fit.max_error:.3g} on [{fit.lo:.4g}, {fit.hi:.4g}]{missed}"
        )

    def _interval(self, node: Node, known: Interval | None) -> tuple[float, float]:
        what = (
            f"{node.op.name} on encrypted values is approximated by a polynomial on its input range"
        )
        if known is None:
            raise CompileError(
                f"{what}, and that range is unknown",
                node.location,
                hint="give calibration data (fhec compile --calibration DATA.npz) so "
                "annotate-ranges can bound it",
            )
        if not known.is_finite():
            raise CompileError(
                f"{what}, and that range [{known.lo}, {known.hi}] is unbounded",
                node.location,
                hint="give calibration data so annotate-ranges can bound it",
            )
        # A point range (a constant input) still needs an interval to fit on.
        slack = self.margin * known.width if known.width > 0 else max(1e-3, known.magnitude * 1e-3)
        lo, hi = known.lo - slack, known.hi + slack
        domain = _domain(node.op)
        if domain is not None:
            start, open_at_start = domain
            if known.lo < start or (open_at_start and known.lo <= start):
                where = f"at {start} and below" if open_at_start else f"below {start}"
                raise CompileError(
                    f"{node.op.name} is undefined {where}, and its calibrated input "
                    f"range [{known.lo:.4g}, {known.hi:.4g}] reaches there",
                    node.location,
                )
            # An open end (a pole at start): the margin is taken as a fraction of the
            # distance to it (at most half), where the function's slope stays moderate.
            toward_pole = (known.lo - start) * max(1.0 - self.margin, 0.5)
            lo = max(lo, start + toward_pole if open_at_start else start)
        return lo, hi

    def _fit(
        self, fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, target: float
    ) -> tuple[np.ndarray, float]:
        grid = np.unique(
            np.concatenate([np.linspace(lo, hi, GRID_POINTS), [0.0] if lo < 0 < hi else []])
        )
        unit = _unit(grid, lo, hi)
        exact = fn(grid)
        degrees = [d for d in (1, 3, 7, 15, 31, 63, 127, 255) if d < self.max_degree]
        best: tuple[np.ndarray, float] | None = None
        for degree in [*degrees, self.max_degree]:
            coefficients = _interpolate(fn, lo, hi, degree)
            error = float(np.max(np.abs(cheb_eval(unit, coefficients) - exact)))
            if self.fit == "remez":
                minimax, _ = remez(lambda u: fn((u * (hi - lo) + lo + hi) / 2.0), unit, degree)
                measured = float(np.max(np.abs(cheb_eval(unit, minimax) - exact)))
                if measured < error:  # the exchange may stall; interpolation stays a floor
                    coefficients, error = _trimmed(minimax), measured
            best = (coefficients, error)
            if error <= target:
                break
        assert best is not None
        return best


def _domain(op: Op) -> tuple[float, bool] | None:
    """Where a function is defined from, and whether that end is open (a pole): the fit
    interval never goes below it. None: defined everywhere."""
    if op.name == "arith.sqrt":
        return 0.0, False
    if op.name == "arith.log":
        return 0.0, True
    if isinstance(op, PowOp) and op.exponent < 0:
        return 0.0, True  # only positive bases (a reciprocal of sums, say)
    if isinstance(op, PowOp) and not float(op.exponent).is_integer():
        return 0.0, False
    return None


def series_slope(coefficients: tuple[float, ...], lo: float, hi: float) -> float:
    """max |p'(x)| on [lo, hi] for the series p on [lo, hi] (on the error grid)."""
    if len(coefficients) < 2:
        return 0.0
    derivative = chebyshev.chebder(np.asarray(coefficients))  # type: ignore[no-untyped-call]
    u = np.linspace(-1.0, 1.0, GRID_POINTS)
    return float(np.max(np.abs(cheb_eval(u, derivative)))) * 2.0 / (hi - lo)


def output_allowances(function: Function, relative: float) -> dict[ValueId, float]:
    """How far off each value may be for every output it reaches to stay within
    `relative` times that output's magnitude: outputs first, then backwards, dividing by
    each user's gain. Values whose way to an output has an unknown gain are left out."""
    graph = function.graph
    allowed: dict[ValueId, float] = {}
    for _, value in function.outputs:
        known = graph.node(value).annotation(Interval)
        if known is not None and known.is_finite() and known.magnitude > 0:
            allowed[value] = min(allowed.get(value, np.inf), relative * known.magnitude)
    for value in reversed(graph.topological_order()):
        for user, _ in graph.users(value):
            gain = _gain(graph, user, value)
            if user not in allowed or gain is None:
                continue
            share = allowed[user] / gain if gain > 0 else np.inf
            allowed[value] = min(allowed.get(value, np.inf), share)
    return {v: a for v, a in allowed.items() if np.isfinite(a)}


def _gain(graph: Graph, user: ValueId, value: ValueId) -> float | None:
    """How much `user` can move per unit of change in its operand `value`: how far its
    interval reaches past the one at 0 when that operand spans [-1, 1] instead."""
    operands = graph.operands(user)
    known = operand_bounds(graph, operands)
    if known is None:
        return None
    ranges, constants = known
    bounds: list[Interval] = []
    for probe in (Interval(-1.0, 1.0), Interval(0.0, 0.0)):
        probed = [probe if o == value else r for o, r in zip(operands, ranges, strict=True)]
        try:
            result = graph.node(user).op.interval(probed, constants)
        except (ValueError, TypeError, IndexError):
            return None
        if result is None or not result.is_finite():
            return None
        bounds.append(result)
    spread, at_zero = bounds
    return float(max(spread.hi - at_zero.hi, at_zero.lo - spread.lo, 0.0))


def _unit(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (2.0 * x - (lo + hi)) / (hi - lo)


def _interpolate(
    fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, degree: int
) -> np.ndarray:
    """The interpolant at Chebyshev points of [lo, hi], its negligible terms dropped."""
    coefficients = chebyshev.chebinterpolate(  # type: ignore[no-untyped-call]
        lambda u: fn((u * (hi - lo) + lo + hi) / 2.0), degree
    )
    return _trimmed(np.asarray(coefficients, dtype=np.float64))


def _trimmed(coefficients: np.ndarray) -> np.ndarray:
    """The series without its negligible terms (odd or even functions leave half the
    coefficients at rounding level)."""
    coefficients = np.array(coefficients, dtype=np.float64)
    scale = float(np.max(np.abs(coefficients))) or 1.0
    coefficients[np.abs(coefficients) < 1e-13 * scale] = 0.0
    last = int(np.flatnonzero(coefficients).max(initial=0))
    return np.asarray(coefficients[: last + 1], dtype=np.float64)


def _fixed_operands(
    function: Function, node: Node, operands: tuple[ValueId, ...]
) -> list[np.ndarray]:
    """The operands after the first, each a one-element constant (e.g. a PRelu slope)."""
    graph = function.graph
    fixed: list[np.ndarray] = []
    for operand in operands[1:]:
        producer = graph.node(operand)
        if not isinstance(producer.op, ConstantOp) or producer.op.value.array.size != 1:
            raise CompileError(
                f"{node.op.name} on encrypted values needs its operand {len(fixed) + 1} to be "
                "a single constant (one polynomial for every element)",
                node.location,
                hint="use one shared parameter (e.g. one PRelu slope for all channels)",
            )
        fixed.append(producer.op.value.array.astype(np.float64).reshape(()))
    return fixed


def _function_of(node: Node, fixed: list[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The op as a float64 function of its first operand, other operands held fixed."""
    op = node.op
    return lambda x: np.asarray(
        op.evaluate([np.asarray(x, dtype=np.float64), *fixed]), dtype=np.float64
    )


def _replace(function: Function, old: ValueId, new: ValueId) -> None:
    """`new` takes over the uses of `old`, which goes with its now unused constants."""
    operands = function.graph.operands(old)
    function.replace_uses(old, new)
    function.graph.remove(old)
    for operand in operands[1:]:
        erase_if_dead(function, operand)
