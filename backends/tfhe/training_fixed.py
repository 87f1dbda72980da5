"""The training step in fixed point: the integer program that runs on numpy integers
(the clear quantized step) and traces into concrete (the circuit), and the building
blocks that lower the step IR onto it (the rules per op: training_lower.py).

Every value is an integer tensor q with a float scale s (the value is s * q, zero point
0 so that products need no correction terms). The scales come from the calibration
(`StepPlan.calibration`, a rehearsal of the whole run in clear), and stay the same on
every step: the new weights are requantized onto their input's scale by a lookup, so a
step's weight outputs are the next step's weight inputs, ciphertexts untouched.

Lookups read at most `lookup_bits` bits: a wider value is rounded first
(round_bit_pattern, by its calibrated bounds). Concrete gives the operands and result of
an addition one width, so a narrow value that lookups read is added into wide sums only
through a copy (`Lowering.detached`): otherwise the lookups would widen with the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fhec.ir.errors import CompileError
from fhec.ir.graph import Module, ValueId

Arrays = dict[str, np.ndarray]
Kernel = Callable[..., Any]  # numpy integers in, numpy integers out (or concrete tracers)


@dataclass(frozen=True, slots=True)
class Quantizer:
    """A step input's fixed encoding: value = scale * q, q in [low, high]."""

    scale: float
    low: int
    high: int

    def encode(self, array: np.ndarray) -> np.ndarray:
        steps = np.rint(np.asarray(array, np.float64) / self.scale)
        return np.asarray(np.clip(steps, self.low, self.high), dtype=np.int64)


def fit_quantizer(magnitude: float, bits: int, signed: bool) -> Quantizer:
    """Symmetric `bits`-bit quantizer of [-magnitude, magnitude] (or [0, magnitude])."""
    top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    scale = magnitude / top if magnitude > 0 else 1.0
    return Quantizer(scale, -top if signed else 0, top)


def width(low: int, high: int) -> int:
    """Bits of the narrowest integer type holding [low, high] (signed if low < 0), as
    concrete assigns them."""
    if low >= 0:
        return max(1, int(high).bit_length())
    return 1 + max(int(high).bit_length(), int(-low - 1).bit_length())


@dataclass(frozen=True, slots=True)
class Fixed:
    """A lowered value: its program slot and its scale."""

    slot: int
    scale: float


@dataclass(slots=True)
class Program:
    """A straight-line integer program; each slot's values on every calibration sample
    are kept as it is built, as the rounding of later lookups depends on them."""

    samples: int
    kernels: list[tuple[Kernel | None, tuple[int, ...]]] = field(default_factory=list)
    values: list[list[np.ndarray]] = field(default_factory=list)

    def input(self, values: list[np.ndarray]) -> int:
        self.kernels.append((None, ()))
        self.values.append(values)
        return len(self.kernels) - 1

    def add(self, kernel: Kernel, *slots: int) -> int:
        self.kernels.append((kernel, slots))
        self.values.append([np.asarray(kernel(*(self.values[s][k] for s in slots)))
                            for k in range(self.samples)])
        return len(self.kernels) - 1

    def bounds(self, slot: int) -> tuple[int, int]:
        arrays = self.values[slot]
        return int(min(a.min() for a in arrays)), int(max(a.max() for a in arrays))

    def run(self, inputs: Sequence[Any], results: Sequence[int]) -> list[Any]:
        """The program on `inputs` (the input slots in order): numpy or concrete tracers."""
        env: list[Any] = []
        given = iter(inputs)
        for kernel, slots in self.kernels:
            env.append(next(given) if kernel is None else kernel(*(env[s] for s in slots)))
        return [env[s] for s in results]


def _fhe() -> Any:
    from fhec.backends.tfhe import import_concrete_quietly

    import_concrete_quietly()
    from concrete import fhe

    return fhe


def lookup_kernel(table: Callable[[np.ndarray], np.ndarray], lsbs: int, bits: int) -> Kernel:
    """round_bit_pattern(q, lsbs) then the table (concrete tabulates it on the rounded
    value's width; on numpy arrays both run in clear, the same integers). `bits` holds
    q and its rounding: hinting it on both sides of the rounding keeps concrete from
    narrowing the rounded value below what rounding up can reach (an overflow it would
    not see, as in backends/tfhe/emit.py)."""
    def kernel(q: Any) -> Any:
        fhe = _fhe()
        if lsbs:
            q = fhe.hint(q, bit_width=bits)
            q = fhe.hint(fhe.round_bit_pattern(q, lsbs_to_remove=lsbs), bit_width=bits)
        return fhe.univariate(table)(q)

    return kernel


def quarter_square(s: np.ndarray) -> np.ndarray:
    """floor(s^2 / 4): a + b and a - b share their parity, so the two floors' fractions
    (both 0 or both 1/4) cancel and qs(a + b) - qs(a - b) = a * b exactly."""
    values = np.asarray(s, dtype=np.int64)
    return np.asarray((values * values) // 4)


def product_kernel(a: Any, b: Any) -> Any:
    square = _fhe().univariate(quarter_square)
    return square(a + b) - square(a - b)


@dataclass(slots=True)
class Lowering:
    """The step IR lowered onto a Program, from its float calibration."""

    module: Module
    bits: int
    lookup_bits: int
    weights: tuple[str, ...]  # step inputs that the step also returns (the trained)
    floats: list[dict[ValueId, np.ndarray]]
    program: Program
    quantizers: dict[str, Quantizer] = field(default_factory=dict)
    lowered: dict[ValueId, Fixed | np.ndarray] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)  # in the program's input order

    # -- bookkeeping ---------------------------------------------------------------
    def magnitude(self, value: ValueId) -> float:
        """The largest |value| over the calibration."""
        return max(float(np.abs(f[value]).max(initial=0.0)) for f in self.floats)

    def nonnegative(self, value: ValueId) -> bool:
        return all(float(f[value].min(initial=0.0)) >= 0.0 for f in self.floats)

    def operand(self, user: ValueId, index: int) -> Fixed:
        """The lowered operand `index` of `user`, which must be encrypted."""
        lowered = self.lowered[self.module.graph.operands(user)[index]]
        if not isinstance(lowered, Fixed):
            node = self.module.graph.node(user)
            raise CompileError("TFHE training takes constant tensors only as scalar factors",
                               node.location, hint="fold the constant into the model")
        return lowered

    # -- building blocks -------------------------------------------------------------
    def table(self, source: Fixed, function: Callable[[np.ndarray], np.ndarray],
              out: Quantizer) -> Fixed:
        """One lookup: out.encode(function(value)), the value rounded to `lookup_bits`
        bits (the low bits off, by its calibrated bounds) before it is read."""
        scale = source.scale

        def table(q: np.ndarray) -> np.ndarray:
            return out.encode(function(np.asarray(q, np.float64) * scale))

        low, high = self.program.bounds(source.slot)
        lsbs = max(0, width(low, high) - self.lookup_bits)
        step = 1 << lsbs  # the rounded bounds: rounding may carry into one more bit
        bits = width(min(low, step * round(low / step)), max(high, step * round(high / step)))
        kernel = lookup_kernel(table, lsbs, bits)
        return Fixed(self.program.add(kernel, source.slot), out.scale)

    def rescale(self, source: Fixed, scale: float) -> Fixed:
        """The same value on another scale (a lookup; the output range follows)."""
        low, high = self.program.bounds(source.slot)
        factor = source.scale / scale
        top = int(np.ceil(max(abs(low), abs(high)) * factor)) + 1
        return self.table(source, lambda v: v, Quantizer(scale, -top, top))

    def narrow(self, source: Fixed, magnitude: int) -> Fixed:
        """`source` with |q| <= magnitude, as a lookup's output (requantized if need be).
        A program input is used as it is when it fits: the others go through the lookup
        even then, because concrete gives the operands and result of an addition one
        width, so a value summed into a wide accumulator elsewhere (the error, into the
        bias gradient) would widen the products' lookups to that accumulator's width."""
        low, high = self.program.bounds(source.slot)
        largest = max(abs(low), abs(high))
        if largest <= magnitude and self.is_input(source):
            return source
        scale = source.scale if largest <= magnitude else largest * source.scale / magnitude
        return self.table(source, lambda v: v, Quantizer(scale, -magnitude, magnitude))

    def is_input(self, value: Fixed) -> bool:
        return self.program.kernels[value.slot][0] is None

    def detached(self, source: Fixed) -> Fixed:
        """`source` through an identity lookup when it is narrow enough to read: the copy
        can be summed into a wide accumulator without widening `source`'s other users
        (see `narrow`); a wide source is left as it is (no lookup reads it unrounded)."""
        low, high = self.program.bounds(source.slot)
        if width(low, high) > self.lookup_bits:
            return source
        return self.table(source, lambda v: v, Quantizer(source.scale, low, high))

    def align(self, a: Fixed, b: Fixed) -> tuple[int, int, float]:
        """Slots of a and b on one scale: exact when the scales' ratio is an integer, else
        the coarser rescaled by a lookup. A step input is otherwise added through a copy
        (`shielded`): lookups read the inputs (products, rescaling), and the weights must
        keep their width to be fed back as the next step's inputs."""
        fine, coarse = (a, b) if a.scale <= b.scale else (b, a)
        ratio = coarse.scale / fine.scale
        fine = self.shielded(fine)
        if abs(ratio - round(ratio)) <= 1e-6 * ratio:
            factor = round(ratio)
            coarse = self.shielded(coarse)
            if factor != 1:
                coarse = Fixed(self.program.add(lambda q: q * factor, coarse.slot), fine.scale)
        else:
            coarse = self.rescale(coarse, fine.scale)
        pair = (fine, coarse) if a.scale <= b.scale else (coarse, fine)
        return pair[0].slot, pair[1].slot, fine.scale

    def shielded(self, value: Fixed) -> Fixed:
        """A step input through an identity lookup (see `align`), another value as is."""
        return self.detached(value) if self.is_input(value) else value

    def product_operands(self, a: Fixed, b: Fixed) -> tuple[Fixed, Fixed]:
        """Narrow both so that a + b and a - b fit a `lookup_bits`-bit lookup."""
        half = ((1 << (self.lookup_bits - 1)) - 1) // 2
        return self.narrow(a, half), self.narrow(b, half)


@dataclass(frozen=True, slots=True)
class StepProgram:
    """The lowered step: encode the inputs, run the integers, decode the outputs."""

    program: Program
    inputs: list[str]  # input names, in the program's (and the circuit's) order
    quantizers: dict[str, Quantizer]
    outputs: list[str]
    output_slots: list[int]
    output_scales: list[float]
    bits: int
    lookup_bits: int
    error_bound: dict[str, float]  # per output: the calibrated error of one step

    def encode(self, named: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [self.quantizers[name].encode(named[name]) for name in self.inputs]

    def decode(self, results: Sequence[np.ndarray]) -> Arrays:
        return {name: np.asarray(q, np.float64) * scale
                for name, q, scale in zip(self.outputs, results, self.output_scales, strict=True)}

    def run_clear(self, encoded: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The quantized step on numpy integers: what the circuit computes, exactly."""
        return [np.asarray(r, np.int64) for r in self.program.run(encoded, self.output_slots)]

    def function(self, names: Sequence[str]) -> Callable[..., Any]:
        """The step for concrete to trace: one argument per input, named by `names`."""
        def step(*positional: Any, **named: Any) -> Any:
            arguments = [*positional, *(named[n] for n in names[len(positional):])]
            results = self.program.run(arguments, self.output_slots)
            return tuple(results) if len(results) > 1 else results[0]

        return step

    def inputset(self) -> list[tuple[np.ndarray, ...]]:
        slots = [s for s, (kernel, _) in enumerate(self.program.kernels) if kernel is None]
        return [tuple(self.program.values[s][k] for s in slots)
                for k in range(self.program.samples)]


__all__ = ["Fixed", "Lowering", "Program", "Quantizer", "StepProgram", "fit_quantizer",
           "width"]
