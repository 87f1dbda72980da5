"""The evaluator's methods for the single-sample layout (passes/pack_single_ckks.py).

A secret value is ONE ciphertext (a 0-d CipherTensor): ciphertext-ciphertext ops, the
unary ones and layout moves run as in the batch layout (backends/ckks/evaluator.py);
plaintexts are packed like the sample (tensors.packed_slots), and matrix products
rotate. `Evaluator._node` looks ops up here first when the module has a period.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import seal

from fhec.backends.ckks.evaluator import Evaluator, Method, Value, _Plain
from fhec.backends.ckks.serialization import CipherTensor
from fhec.backends.ckks.tensors import packed_slots, rotations
from fhec.ir.errors import InputError
from fhec.ir.ops import ckks


def _galois_keys(ev: Evaluator) -> seal.GaloisKeys:
    if ev.keys.galois_keys is None:
        raise InputError("the evaluation keys hold no Galois keys, and this circuit rotates",
                         hint="generate the keys for this compiled circuit")
    return ev.keys.galois_keys


def _single_with_plain(
    ev: Evaluator,
    args: list[Value | _Plain],
    combine: Callable[[seal.Ciphertext, seal.Plaintext], seal.Ciphertext],
    product: bool,
) -> np.ndarray:
    """A plaintext met by the packed sample: a factor that is one number fills every slot
    (zeros past the sample stay zeros); anything else, and every term of a sum, is
    packed with zeros past the sample's numbers, so those slots stay zero."""
    x, plain = args
    assert isinstance(x, CipherTensor) and isinstance(plain, _Plain) and ev.period is not None
    ct: seal.Ciphertext = x.ciphertexts[()]
    scale = ev._plain_scale(plain, ct) if product else ct.scale()
    values = np.broadcast_to(np.asarray(plain.array, dtype=np.float64), ev._shape)
    out = np.empty((), dtype=object)
    if not np.any(np.abs(values) * scale >= 0.5):  # x * 0 is a fresh zero; x + 0 is x
        out[()] = ev._zero_product(ct, scale) if product else ct
        return out
    first = float(values.flat[0])
    if product and np.all(values == first):
        encoded = ev.context.encode(first, scale, plain.level)
    else:
        slots = packed_slots(values, ev.period, ev.context.slot_count)
        encoded = ev.context.encode(slots, scale, plain.level)
    out[()] = combine(ct, encoded)
    return out


def _single_add_plain(ev: Evaluator, op: ckks.AddPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return _single_with_plain(ev, args, ev.seal.add_plain, product=False)


def _single_sub_plain(ev: Evaluator, op: ckks.SubPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return _single_with_plain(ev, args, ev.seal.sub_plain, product=False)


def _single_mul_plain(ev: Evaluator, op: ckks.MulPlainOp, args: list[Value | _Plain]) -> np.ndarray:
    return _single_with_plain(ev, args, ev.seal.multiply_plain, product=True)


def _matvec_diagonal(
    ev: Evaluator, op: ckks.MatVecDiagonalOp, args: list[Value | _Plain]
) -> np.ndarray:
    """y = A x for A = w^T zero-padded to P x P, by Halevi-Shoup diagonals with baby-step
    giant-step: y = sum_g rot(sum_j rot(diag_{gb+j}, -gb) * rot(x, j), gb), where
    diag_k[i] = A[i, (i + k) mod P] and rot(v, s)[i] = v[i + s] (SEAL's rotate_vector)."""
    x, plain = args
    assert isinstance(x, CipherTensor) and isinstance(plain, _Plain)
    galois = _galois_keys(ev)
    period, baby = op.period, op.baby_steps
    matrix = ckks.padded_transpose(np.asarray(plain.array, dtype=np.float64), period)
    rows = np.arange(period)
    ct = x.ciphertexts[()]
    scale = ev._plain_scale(plain, ct)
    # rot(x, j) on first use: a sparse matrix (a convolution's Toeplitz) needs few of them
    rotated: dict[int, seal.Ciphertext] = {0: ct}
    total: seal.Ciphertext | None = None
    for giant in range(0, period, baby):
        partial: seal.Ciphertext | None = None
        for j in range(baby):
            diagonal = matrix[rows, (rows + giant + j) % period]
            if not np.any(np.abs(diagonal) * scale >= 0.5):
                continue  # a zero diagonal adds nothing (and SEAL refuses zero plaintexts)
            assert ev._value is not None
            key = (ev._value, giant + j, scale)
            if key not in ev.diagonals:
                slots = np.tile(np.roll(diagonal, giant), ev.context.slot_count // period)
                ev.diagonals[key] = ev.context.encode(slots, scale, plain.level)
            if j not in rotated:
                rotated[j] = ev.seal.rotate_vector(ct, j, galois)
            term = ev.seal.multiply_plain(rotated[j], ev.diagonals[key])
            partial = term if partial is None else ev.seal.add(partial, term)
        if partial is None:
            continue
        if giant:
            partial = ev.seal.rotate_vector(partial, giant, galois)
        total = partial if total is None else ev.seal.add(total, partial)
    out = np.empty((), dtype=object)
    out[()] = total if total is not None else ev._zero_product(ct, scale)
    return out


def _matvec_stacked(
    ev: Evaluator, op: ckks.MatVecStackedOp, args: list[Value | _Plain]
) -> np.ndarray:
    """y = A x for x encrypted stacked (block k: x rotated by k): one product by the
    plaintext whose block k is diag_k[i] = A[i, (i + k) mod P], then the sum of the P
    blocks by rotations P, 2P, ..., P * P / 2, which leaves y in every block."""
    x, plain = args
    assert isinstance(x, CipherTensor) and isinstance(plain, _Plain) and ev._value is not None
    galois = _galois_keys(ev)
    period = op.period
    ct = x.ciphertexts[()]
    scale = ev._plain_scale(plain, ct)
    key = (ev._value, -1, scale)
    if key not in ev.diagonals:
        matrix = ckks.padded_transpose(np.asarray(plain.array, dtype=np.float64), period)
        diagonals = matrix[np.arange(period)[None, :], rotations(period)].reshape(-1)
        slots = np.tile(diagonals, ev.context.slot_count // diagonals.size)
        ev.diagonals[key] = ev.context.encode(slots, scale, plain.level)
    total = ev.seal.multiply_plain(ct, ev.diagonals[key])
    for step in op.rotation_steps(ev.context.slot_count):
        total = ev.seal.add(total, ev.seal.rotate_vector(total, step, galois))
    out = np.empty((), dtype=object)
    out[()] = total
    return out


SINGLE_METHODS: dict[type, Method] = {
    ckks.MatVecStackedOp: _matvec_stacked,
    ckks.AddPlainOp: _single_add_plain,
    ckks.SubPlainOp: _single_sub_plain,
    ckks.MulPlainOp: _single_mul_plain,
    ckks.MatVecDiagonalOp: _matvec_diagonal,
}
