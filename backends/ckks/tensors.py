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
