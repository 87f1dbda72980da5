"""Arrays to ciphertext tensors and back, on the client (it holds the secret key)."""

from __future__ import annotations

import numpy as np

from fhec.backends.ckks.seal_context import Encryptor
from fhec.backends.ckks.serialization import CipherTensor
from fhec.ir.errors import InputError


def encrypt_tensor(
    encryptor: Encryptor, array: np.ndarray, scale_bits: int, name: str
) -> CipherTensor:
    """One ciphertext per element of a sample, holding that element of every sample
    (axis 0) in its slots."""
    values = np.asarray(array, dtype=np.float64)
    slots = encryptor.context.slot_count
    if values.ndim == 0 or values.shape[0] > slots:
        raise InputError(
            f"input {name!r} of shape {values.shape} does not fit: the batch axis (axis 0) "
            f"goes into {slots} slots",
            hint=f"give 1 to {slots} samples along axis 0",
        )
    if not np.all(np.isfinite(values)):
        raise InputError(f"input {name!r} holds NaN or infinite values")
    fresh_scale = encryptor.context.canonical_scale(scale_bits, 0)
    cts = np.empty(values.shape[1:], dtype=object)
    for index in np.ndindex(cts.shape):
        cts[index] = encryptor.encrypt(batch_column(values, index), fresh_scale)
    return CipherTensor(cts, values.shape[0], scale_bits, 0)


def decrypt_tensor(encryptor: Encryptor, tensor: CipherTensor) -> np.ndarray:
    out = np.empty(tensor.shape, dtype=np.float64)
    for index in np.ndindex(tensor.ciphertexts.shape):
        out[_column_key(index)] = encryptor.decrypt(tensor.ciphertexts[index], tensor.count)
    return out


def batch_column(array: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """The values of element `index` of every sample (axis 0 is the batch)."""
    return np.asarray(array[_column_key(index)])


def _column_key(index: tuple[int, ...]) -> tuple[slice | int, ...]:
    return (slice(None), *index)


# -- the single-sample layout (passes/pack_single_ckks.py) -----------------------------
def packed_slots(
    values: np.ndarray, period: int, slots: int, stacked: bool = False
) -> np.ndarray:
    """One sample's numbers, flattened, in slots 0..n-1, zeros up to `period`, and that
    block repeated across the `slots` (so rotations by less than the period wrap).
    Stacked: P blocks, block k holding that block rotated by k, repeated."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    block = np.zeros(period, dtype=np.float64)
    block[: flat.size] = flat
    if stacked:
        block = block[rotations(period)].reshape(-1)
    return np.ascontiguousarray(np.tile(block, slots // block.size))


def rotations(period: int) -> np.ndarray:
    """(P, P) indices: row k is 0..P-1 rotated left by k."""
    steps = np.arange(period)
    return np.asarray((steps[None, :] + steps[:, None]) % period)


def encrypt_packed(
    encryptor: Encryptor,
    array: np.ndarray,
    scale_bits: int,
    period: int,
    name: str,
    stacked: bool = False,
) -> CipherTensor:
    """ONE sample (1, ...) as one ciphertext (a 0-d tensor of ciphertexts, count 1)."""
    values = np.asarray(array, dtype=np.float64)
    if values.ndim == 0 or values.shape[0] != 1 or values[0].size > period:
        raise InputError(
            f"input {name!r} of shape {values.shape} does not fit the single-sample layout "
            f"(one sample of at most {period} numbers)",
            hint="run one sample at a time, of the compiled shape",
        )
    if not np.all(np.isfinite(values)):
        raise InputError(f"input {name!r} holds NaN or infinite values")
    context = encryptor.context
    slots = packed_slots(values, period, context.slot_count, stacked)
    cts = np.empty((), dtype=object)
    cts[()] = encryptor.encrypt(slots, context.canonical_scale(scale_bits, 0))
    return CipherTensor(cts, 1, scale_bits, 0)


def decrypt_packed(
    encryptor: Encryptor, tensor: CipherTensor, shape: tuple[int, ...]
) -> np.ndarray:
    """The sample of `shape` (1, ...) from the first slots of its one ciphertext."""
    count = int(np.prod(shape, dtype=np.int64))
    return encryptor.decrypt(tensor.ciphertexts[()], count).reshape(shape)
