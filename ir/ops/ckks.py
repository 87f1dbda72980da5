"""The CKKS scheme dialect, in the batch-axis layout.

A secret tensor of shape (B, d1, ..., dk) is held as d1*...*dk ciphertexts, one per
element of a sample, each packing the B samples in its slots (axis 0 is the batch
axis). So scheme ops keep tensor shapes, and `evaluate` is plain numpy: the
reference interpreter runs a lowered module exactly like the original one.

Each op also has a `state` rule, the scheme-level twin of `infer`: from the
`#ckks{scale_bits, level, size}` of its operands, the state of its result, or a
ValueError when the operands do not fit (scales or levels that differ). `level`
counts the rescales and modulus switches behind a value (0 = freshly encrypted);
`size` is the number of polynomials (2, or 3 after a product until relinearized;
1 for an encoded plaintext). `#ckks_params` holds the parameters chosen for the
module, on every `func.input`. `ckks.decrypt` marks where the server's part ends:
what follows it is public, the client's epilogue (split-epilogue-ckks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fhec.ir.annotation import Annotation, register_annotation
from fhec.ir.interval import Interval
from fhec.ir.op import Op, register_op
from fhec.ir.ops.common import as_dtype, broadcast_type
from fhec.ir.types import TensorType

# Largest log2(Q*P) (all primes, the key-switching one included) for a ternary secret,
# by security level and poly degree N: the HomomorphicEncryption.org standard's table,
# which SEAL enforces (CoeffModulus::MaxBitCount). Security 0 means no check at all.
MAX_LOG_Q: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881, 65536: 1772},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}
SECURITY_LEVELS = (128, 192, 256, 0)
MAX_PRIME_BITS = 60  # SEAL's limit on one coefficient-modulus prime
Constants = Sequence[np.ndarray | None]


@register_annotation
@dataclass(frozen=True, slots=True)
class CkksState(Annotation):
    """Scale (log2), level (rescales and modulus switches so far) and polynomial count."""

    key = "ckks"
    scale_bits: int
    level: int
    size: int


@register_annotation
@dataclass(frozen=True, slots=True)
class CkksParams(Annotation):
    """Encryption parameters: poly degree N and the coefficient-modulus primes' sizes,
    in SEAL's order: q0 (the last one left), the rescaling primes from the bottom up,
    then the special key-switching prime. Inputs are encoded at 2**scale_bits."""

    key = "ckks_params"
    poly_degree: int
    coeff_bits: tuple[int, ...]
    scale_bits: int
    security: int

    @property
    def depth(self) -> int:
        """Rescales (or modulus switches) a fresh ciphertext can take."""
        return len(self.coeff_bits) - 2

    @property
    def log_q(self) -> int:
        return sum(self.coeff_bits)

    @property
    def slots(self) -> int:
        return self.poly_degree // 2

    def data_bits_at(self, level: int) -> int:
        """log2 of the modulus a ciphertext at `level` lives under."""
        return sum(self.coeff_bits[: len(self.coeff_bits) - 1 - level])

    def rescale_bits_at(self, level: int) -> int:
        """Size of the prime that a rescale from `level` divides by."""
        return self.coeff_bits[len(self.coeff_bits) - 2 - level]

    def check(self) -> None:
        """ValueError unless these parameters are well formed and as secure as they say."""
        n, bits = self.poly_degree, self.coeff_bits
        if self.security not in SECURITY_LEVELS:
            raise ValueError(f"security {self.security} is not one of {SECURITY_LEVELS}")
        if n < 1024 or n & (n - 1):
            raise ValueError(f"poly degree {n} is not a power of two >= 1024")
        if len(bits) < 2 or any(not 10 <= b <= MAX_PRIME_BITS for b in bits):
            raise ValueError(f"coefficient primes {bits}: need >= 2 primes of 10..60 bits")
        if self.security:
            limit = MAX_LOG_Q[self.security].get(n)
            if limit is None or self.log_q > limit:
                raise ValueError(
                    f"{self.log_q} modulus bits at N={n} exceed the {limit} bits allowed "
                    f"for {self.security}-bit security"
                )


def _equal(what: str, values: Sequence[int]) -> int:
    if len(set(values)) != 1:
        raise ValueError(f"operands at different {what}: {list(values)}")
    return values[0]


class CkksOp(Op):
    """A scheme op: `state` gives the result's #ckks from the operands' (see module doc)."""

    __slots__ = ()

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        raise NotImplementedError


class _Binary(CkksOp):
    """Elementwise with broadcasting; `plain` ops take a ciphertext and a plaintext."""

    __slots__ = ()
    arity = 2
    plain: ClassVar[bool] = False
    multiplicative: ClassVar[bool] = False

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        secret = (operands[0].secret, operands[1].secret)
        if secret != (True, not self.plain):
            wanted = "a ciphertext and a plaintext" if self.plain else "two ciphertexts"
            raise ValueError(f"{self.name} takes {wanted}, found secrecy {secret}")
        return broadcast_type(operands)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, y = operands
        return as_dtype(self.apply(x, y), x.dtype)

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        a, b = operands
        level = _equal("levels", [a.level, b.level])
        if self.multiplicative:
            size = a.size + b.size - 1 if not self.plain else a.size
            return CkksState(a.scale_bits + b.scale_bits, level, size)
        scale = _equal("scales", [a.scale_bits, b.scale_bits])
        return CkksState(scale, level, max(a.size, b.size))


class _Add(_Binary):
    __slots__ = ()

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.add(x, y)

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0] + operands[1]


class _Sub(_Binary):
    __slots__ = ()

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.subtract(x, y)

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0] - operands[1]


class _Mul(_Binary):
    __slots__ = ()
    multiplicative = True

    def apply(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.multiply(x, y)

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0] * operands[1]


@register_op
@dataclass(frozen=True, slots=True)
class AddOp(_Add):
    """x + y, two ciphertexts of equal scale and level."""

    name = "ckks.add"


@register_op
@dataclass(frozen=True, slots=True)
class AddPlainOp(_Add):
    """x + p, p a plaintext encoded at x's scale and level."""

    name = "ckks.add_plain"
    plain = True


@register_op
@dataclass(frozen=True, slots=True)
class SubOp(_Sub):
    """x - y, two ciphertexts of equal scale and level."""

    name = "ckks.sub"


@register_op
@dataclass(frozen=True, slots=True)
class SubPlainOp(_Sub):
    """x - p, p a plaintext encoded at x's scale and level."""

    name = "ckks.sub_plain"
    plain = True


@register_op
@dataclass(frozen=True, slots=True)
class MulOp(_Mul):
    """x * y at one level: scales add; 3 polynomials until relinearized."""

    name = "ckks.mul"


@register_op
@dataclass(frozen=True, slots=True)
class MulPlainOp(_Mul):
    """x * p, p a plaintext at x's level: scales add."""

    name = "ckks.mul_plain"
    plain = True


@register_op
@dataclass(frozen=True, slots=True)
class MatMulPlainOp(CkksOp):
    """x @ w for a ciphertext x (B, ..., K) and a plaintext matrix w (K, M): each result
    ciphertext is a sum of ciphertext-times-scalar products (no rotations)."""

    name = "ckks.matmul_plain"
    arity = 2

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x, w = operands
        if not x.secret or w.secret:
            raise ValueError(f"{self.name} takes a ciphertext and a plaintext matrix")
        if x.rank < 2 or w.rank != 2 or x.shape[-1] != w.shape[0]:
            raise ValueError(f"{self.name} cannot multiply {x.shape} by {w.shape}")
        return TensorType((*x.shape[:-1], w.shape[1]), x.dtype, True)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x, w = operands
        return as_dtype(np.matmul(x, w.astype(x.dtype)), x.dtype)

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        x, w = operands
        level = _equal("levels", [x.level, w.level])
        return CkksState(x.scale_bits + w.scale_bits, level, x.size)


class _Unary(CkksOp):
    """Same shape and values (in plaintext semantics) as the operand."""

    __slots__ = ()
    arity = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if not operands[0].secret:
            raise ValueError(f"{self.name} takes a ciphertext")
        return operands[0]

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return operands[0]

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class NegateOp(_Unary):
    """-x."""

    name = "ckks.negate"

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(np.negative(operands[0]))

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return -operands[0]

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class RescaleOp(_Unary):
    """Divide by the last prime of the ciphertext's modulus (about 2**bits): the scale
    drops by `bits`, the level goes up by one."""

    name = "ckks.rescale"
    bits: int

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        x = operands[0]
        if self.bits >= x.scale_bits:
            raise ValueError(f"rescaling by {self.bits} bits a value at scale 2^{x.scale_bits}")
        return CkksState(x.scale_bits - self.bits, x.level + 1, x.size)


@register_op
@dataclass(frozen=True, slots=True)
class RelinearizeOp(_Unary):
    """Back to 2 polynomials after a product, with the relinearization key."""

    name = "ckks.relinearize"

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        x = operands[0]
        if x.size != 3:
            raise ValueError(f"relinearizing a ciphertext of {x.size} polynomials (needs 3)")
        return CkksState(x.scale_bits, x.level, 2)


@register_op
@dataclass(frozen=True, slots=True)
class ModSwitchOp(_Unary):
    """Drop `levels` primes without dividing: same scale, `levels` levels down."""

    name = "ckks.mod_switch"
    levels: int = 1

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        if self.levels < 1:
            raise ValueError(f"switching down {self.levels} levels")
        x = operands[0]
        return CkksState(x.scale_bits, x.level + self.levels, x.size)


@register_op
@dataclass(frozen=True, slots=True)
class EncodeOp(CkksOp):
    """A public tensor encoded as plaintexts at 2**scale_bits and `level` (the scale and
    level of the ciphertext it meets)."""

    name = "ckks.encode"
    arity = 1
    scale_bits: int
    level: int

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if operands[0].secret:
            raise ValueError("ckks.encode takes a public tensor")
        return operands[0]

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return operands[0]

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0]

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        return CkksState(self.scale_bits, self.level, 1)


@register_op
@dataclass(frozen=True, slots=True)
class ReduceAddOp(CkksOp):
    """Sum over per-sample `axes` (never axis 0): additions of whole ciphertexts, no
    level, no rotation."""

    name = "ckks.reduce_add"
    arity = 1
    axes: tuple[int, ...]
    keepdims: bool = True

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if not x.secret:
            raise ValueError(f"{self.name} takes a ciphertext")
        if not self.axes or any(not 0 < a < x.rank for a in self.axes):
            raise ValueError(f"{self.name} sums over per-sample axes 1..{x.rank - 1}, "
                             f"got {list(self.axes)}")
        shape = tuple(1 if i in self.axes else d for i, d in enumerate(x.shape)
                      if self.keepdims or i not in self.axes)
        return x.with_shape(shape)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        return np.asarray(np.sum(x, axis=self.axes, keepdims=self.keepdims, dtype=x.dtype))

    def interval_with_types(self, operands: Sequence[Interval], constants: Constants,
                            types: Sequence[TensorType]) -> Interval | None:
        count = int(np.prod([types[0].shape[a] for a in self.axes]))
        return Interval(operands[0].lo * count, operands[0].hi * count)

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        return operands[0]


@register_op
@dataclass(frozen=True, slots=True)
class SlotSumOp(CkksOp):
    """The sum over the batch axis (every slot), left in every slot: rotate-and-sum by
    1, 2, 4, ... slots/2 (one Galois key each). The result (1, ...) is replicated: the
    same number in every slot, as trained weights are. Slots past the samples must
    hold zeros (pack-slots-ckks masks the operand when they may not)."""

    name = "ckks.slot_sum"
    arity = 1

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        x = operands[0]
        if not x.secret or x.rank < 1:
            raise ValueError(f"{self.name} takes a ciphertext tensor with a batch axis")
        return x.with_shape((1, *x.shape[1:]))

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        x = operands[0]
        return np.asarray(np.sum(x, axis=0, keepdims=True, dtype=x.dtype))

    def interval_with_types(self, operands: Sequence[Interval], constants: Constants,
                            types: Sequence[TensorType]) -> Interval | None:
        count = types[0].shape[0]
        return Interval(operands[0].lo * count, operands[0].hi * count)

    def state(self, operands: Sequence[CkksState]) -> CkksState:
        return operands[0]

    @staticmethod
    def rotation_steps(slots: int) -> tuple[int, ...]:
        """The rotations of a rotate-and-sum over `slots` slots."""
        return tuple(1 << i for i in range(max(slots - 1, 0).bit_length()))


@register_annotation
@dataclass(frozen=True, slots=True)
class Replicated(Annotation):
    """On a secret input of shape (1, ...): its numbers fill every slot (a trained
    weight, shared by all the samples), where other inputs hold one sample per slot and
    zeros past the last one."""

    key = "replicated"
    all_slots: bool = True


@register_annotation
@dataclass(frozen=True, slots=True)
class CkksRotations(Annotation):
    """The slot rotations the circuit performs: one Galois key each (on every input,
    set by select-rotation-keys-ckks; absent when the circuit rotates nothing)."""

    key = "ckks_rotations"
    steps: tuple[int, ...]


@register_op
@dataclass(frozen=True, slots=True)
class EncodeSamplesOp(EncodeOp):
    """A public tensor with a batch axis encoded sample by sample: its rows in the
    samples' slots and zeros past them (a mask of the samples' slots), never as one
    number filling every slot even where its rows are all equal."""

    name = "ckks.encode_samples"


# Layout ops move ciphertexts without computing (a float-to-float cast changes nothing
# either): their result has their operands' state.
LAYOUT_OPS = frozenset(
    {"tensor.reshape", "tensor.transpose", "tensor.concat", "tensor.gather", "tensor.cast"}
)


@register_op
@dataclass(frozen=True, slots=True)
class DecryptOp(Op):
    """Where the server's part ends: the client decrypts its operand (the server returns
    it as `output_name`) and computes what follows in the clear (a client epilogue:
    argmax, a final sigmoid or softmax, casts; see split-epilogue-ckks)."""

    name = "ckks.decrypt"
    arity = 1
    output_name: str

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        if not operands[0].secret:
            raise ValueError("ckks.decrypt takes a secret tensor")
        return operands[0].with_secret(False)

    def evaluate(self, operands: Sequence[np.ndarray]) -> np.ndarray:
        return operands[0]

    def interval(self, operands: Sequence[Interval], constants: Constants) -> Interval | None:
        return operands[0]


# -- the single-sample layout (pack-slots-ckks{layout=single}) ------------------------
@register_annotation
@dataclass(frozen=True, slots=True)
class SingleLayout(Annotation):
    """On every secret input of a module in the single-sample layout: a value (1, ...)
    is ONE ciphertext holding its n numbers (flattened) in slots 0..n-1 and zeros up to
    `period` (a power of two), that block repeated across every slot, so a rotation by
    k < period reads element (i + k) mod period in slot i. Slots past n in each block
    stay zero (plus noise): plaintexts added are masked to the n numbers."""

    key = "ckks_single"
    period: int
    # The input of a first layer (`ckks.matvec_stacked`): the client encrypts its P
    # rotations, block k of P slots holding x rotated by k (P * P slots in all).
    stacked: bool = False


def padded_transpose(weights: np.ndarray, period: int) -> np.ndarray:
    """A = w^T for weights w (K, M), zero-padded to P x P: the single layout's mat-vecs
    multiply by its diagonals, diag_k[i] = A[i, (i + k) mod P]."""
    padded = np.zeros((period, period))
    padded[: weights.shape[1], : weights.shape[0]] = weights.T
    return padded


@register_op
@dataclass(frozen=True, slots=True)
class MatVecDiagonalOp(MatMulPlainOp):
    """x @ w for ONE sample x (1, K) packed with `period` P, w (K, M) a plaintext: the
    Halevi-Shoup diagonal method on the P x P zero-padded matrix A = w^T,
    y = sum_k diag_k * rot(x, k), by baby-step giant-step (Halevi & Shoup, "Algorithms
    in HElib", 2014): rot(x, j) for j < b once, then each group g of b diagonals
    (pre-rotated by -g*b) summed and rotated by g*b: (b - 1) + (P/b - 1) rotations."""

    name = "ckks.matvec_diagonal"
    period: int
    baby_steps: int

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        result = MatMulPlainOp.infer(self, operands)
        x, w = operands
        period, baby = self.period, self.baby_steps
        if period < 1 or period & (period - 1) or baby < 1 or period % baby:
            raise ValueError(f"{self.name}: period {period} and baby steps {baby} must be "
                             "powers of two, baby steps dividing the period")
        if x.rank != 2 or x.shape[0] != 1 or max(w.shape) > period:
            raise ValueError(f"{self.name} takes one sample (1, K) and a matrix of at most "
                             f"{period} x {period}, found {x.shape} and {w.shape}")
        return result

    def rotation_steps(self, slots: int) -> tuple[int, ...]:
        """The baby steps 1..b-1 and the giant steps b, 2b, ..., P - b."""
        giant = range(self.baby_steps, self.period, self.baby_steps)
        return tuple(sorted({*range(1, self.baby_steps), *giant}))

    def nonzero_diagonals(self, weights: np.ndarray) -> list[int]:
        """The k whose diagonal of A holds a nonzero (a convolution's Toeplitz matrix has
        few such diagonals)."""
        padded, rows = padded_transpose(weights, self.period), np.arange(self.period)
        return [k for k in range(self.period) if np.any(padded[rows, (rows + k) % self.period])]

    def used_rotation_steps(self, weights: np.ndarray) -> tuple[int, ...]:
        """The steps a product by these weights rotates by: diagonal k's baby step k mod b
        and giant step k - k mod b, for each nonzero diagonal k."""
        used, baby = self.nonzero_diagonals(weights), self.baby_steps
        steps = {k % baby for k in used} | {k - k % baby for k in used}
        return tuple(sorted(steps - {0}))


@register_op
@dataclass(frozen=True, slots=True)
class MatVecStackedOp(MatMulPlainOp):
    """x @ w for ONE sample x (1, K) that the client encrypted stacked (`#ckks_single{
    stacked}`: block k of `period` P slots holds x rotated by k, so the diagonal method's
    rotations of x come for free): ONE product by the plaintext whose block k is the
    k-th diagonal of A = w^T, then a rotate-and-sum over the P blocks (by P, 2P, ...,
    P * P / 2: log2 P rotations). The result is a plain packed value (period P)."""

    name = "ckks.matvec_stacked"
    period: int

    def infer(self, operands: Sequence[TensorType]) -> TensorType:
        result = MatMulPlainOp.infer(self, operands)
        x, w = operands
        if self.period < 1 or self.period & (self.period - 1):
            raise ValueError(f"{self.name}: period {self.period} is not a power of two")
        if x.rank != 2 or x.shape[0] != 1 or max(w.shape) > self.period:
            raise ValueError(f"{self.name} takes one sample (1, K) and a matrix of at most "
                             f"{self.period} x {self.period}, found {x.shape} and {w.shape}")
        return result

    def rotation_steps(self, slots: int) -> tuple[int, ...]:
        """P, 2P, ..., P * P / 2: the sum over the blocks."""
        return tuple(self.period << i for i in range(self.period.bit_length() - 1))
