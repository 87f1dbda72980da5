"""Microsoft SEAL through seal-python: context, keys, encoding and encryption.

Everything that touches `seal` objects directly lives here (plus the evaluator), so
the rest of the backend reads as arrays and ciphertext tensors. Pitfall this module
guards: seal-python's `CKKSEncoder.encode` ignores numpy strides, so every vector is
made `np.ascontiguousarray(x, dtype=np.float64)` first.

Security: `CkksParams.check` enforces the HomomorphicEncryption.org table
(`MAX_LOG_Q`); SEAL enforces the same table again for N <= 32768. SEAL has no table
entry for N = 65536, so that one size is created with SEAL's check off, ours on.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass

import numpy as np
import seal

from fhec.ir.errors import FhecError, InternalCompilerError
from fhec.ir.ops.ckks import MAX_LOG_Q, CkksParams

_SEAL_SECURITY = {
    128: seal.sec_level_type.tc128,
    192: seal.sec_level_type.tc192,
    256: seal.sec_level_type.tc256,
    0: seal.sec_level_type.none,
}
_SEAL_TABLE_MAX_DEGREE = 32768
# A modulus switch relabels a scale this close to the planned one (dropping primes)
# instead of correcting it with a product and a rescale (NTTs): the evaluator's rule,
# and the error model's.
RELABEL_DRIFT = 1e-5


class SealContext:
    """A SEAL CKKS context for `params`, with its encoder, evaluator and the parms_id of
    every level (level 0 = fresh ciphertexts, `params.depth` = only q0 left)."""

    def __init__(self, params: CkksParams) -> None:
        try:
            params.check()
        except ValueError as exc:
            raise FhecError(f"invalid CKKS parameters: {exc}") from None
        self.params = params
        parms = seal.EncryptionParameters(seal.scheme_type.ckks)
        parms.set_poly_modulus_degree(params.poly_degree)
        try:
            primes = seal.CoeffModulus.Create(params.poly_degree, list(params.coeff_bits))
        except (ValueError, RuntimeError) as exc:  # e.g. too few NTT primes of that size
            raise FhecError(
                f"SEAL cannot make the CKKS modulus {params.coeff_bits}: {exc}"
            ) from None
        parms.set_coeff_modulus(primes)
        checked_by_seal = params.security and params.poly_degree <= _SEAL_TABLE_MAX_DEGREE
        level = _SEAL_SECURITY[params.security if checked_by_seal else 0]
        self.seal = seal.SEALContext(parms, True, level)
        if not self.seal.parameters_set():  # check() enforces SEAL's own rules first
            raise InternalCompilerError(
                f"SEAL rejects {params}: {self.seal.parameter_error_message()}", "ckks"
            )
        self.primes = tuple(int(m.value()) for m in parms.coeff_modulus())
        # Parameters and security level identify a context: data from another one is refused.
        identity = parms.to_bytes(seal.compr_mode_type.none) + str(params.security).encode()
        self.fingerprint = hashlib.sha256(identity).hexdigest()[:32]
        self.encoder = seal.CKKSEncoder(self.seal)
        self.evaluator = seal.Evaluator(self.seal)
        self._parms_ids = _parms_ids_by_level(self.seal)
        assert len(self._parms_ids) == params.depth + 1, "SEAL's chain has one level per prime"
        self._level_scales = _level_scales(params.scale_bits, self.primes[1:-1])

    @property
    def slot_count(self) -> int:
        return int(self.encoder.slot_count())

    def parms_id(self, level: int) -> seal.ParmsId:
        if not 0 <= level < len(self._parms_ids):
            raise FhecError(f"level {level} is outside the modulus chain (0..{self.params.depth})")
        return self._parms_ids[level]

    def level_of(self, parms_id: seal.ParmsId) -> int:
        return self._parms_ids.index(list(parms_id))

    def level_scale(self, level: int) -> float:
        """The true scale of a value at the waterline (nominal 2**scale_bits) at `level`:
        s_(l+1) = s_l**2 / q, q the prime a rescale from level l divides by, so that every
        product of two such values, rescaled, lands on it exactly and additions never
        relabel scales. Fresh ciphertexts take s_0 (see `_level_scales`)."""
        return self._level_scales[level]

    def canonical_scale(self, bits: int, level: int) -> float:
        """The true scale planned for a value of nominal scale 2**bits at `level`."""
        return float(self._level_scales[level] ** (bits / self.params.scale_bits))

    def switch_drift(self, bits: int, start: int, end: int) -> float | None:
        """|s_start / s_end - 1| for the planned scales of 2**bits at two levels when a
        modulus switch between them relabels (below RELABEL_DRIFT), else None."""
        drift = abs(self.canonical_scale(bits, start) / self.canonical_scale(bits, end) - 1.0)
        return drift if drift < RELABEL_DRIFT else None

    def rescale_prime(self, level: int) -> int:
        """The prime a rescale from `level` divides by (the last one left)."""
        return self.primes[len(self.primes) - 2 - level]

    def prime_drift(self) -> float:
        """Largest |q - 2**bits| / 2**bits over the rescaling primes: how far a rescale's
        true divisor is from the nominal power of two the compiler plans with."""
        rescaling = zip(self.primes[1:-1], self.params.coeff_bits[1:-1], strict=True)
        return max((abs(q - 2.0**b) / 2.0**b for q, b in rescaling), default=0.0)

    # -- encoding ------------------------------------------------------------
    def encode(self, values: np.ndarray | float, scale: float, level: int) -> seal.Plaintext:
        """A plaintext of `values` (a scalar fills every slot) at `scale` and `level`."""
        if np.ndim(values) == 0:
            plain = self.encoder.encode(float(values), scale)
        else:
            vector = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
            if vector.size > self.slot_count:
                raise FhecError(f"{vector.size} values do not fit {self.slot_count} slots")
            plain = self.encoder.encode(vector, scale)
        if level:
            self.evaluator.mod_switch_to_inplace(plain, self.parms_id(level))
        return plain

    def decode(self, plain: seal.Plaintext, count: int) -> np.ndarray:
        return np.asarray(self.encoder.decode(plain), dtype=np.float64)[:count]


def _level_scales(bits: int, rescaling_primes: tuple[int, ...]) -> list[float]:
    """The scales s_l = s_(l-1)**2 / q_l from an s_0 chosen so that none strays from
    2**bits. With log2 s_l = bits + a_l and log2 q_l = bits + b_l, a_l = 2 a_(l-1) - b_l:
    from a_0 = 0 the primes' offsets (all below 2**bits, about 1e-6 each) would double
    level after level (a factor 2**40 after 40 levels); a_0 = sum_j 2**-j b_j makes
    every a_l a weighted mean of the b_j, so |a_l| <= max |b_j|."""
    dropped = rescaling_primes[::-1]  # SEAL divides by the last prime first
    offsets = [math.log2(q) - bits for q in dropped]
    start = sum(offset / 2.0 ** (j + 1) for j, offset in enumerate(offsets))
    scales = [2.0 ** (bits + start)]
    for prime in dropped:
        scales.append(scales[-1] ** 2 / prime)
    return scales


def _parms_ids_by_level(context: seal.SEALContext) -> list[list[int]]:
    ids: list[list[int]] = []
    data = context.first_context_data()
    while data is not None:
        ids.append(list(data.parms_id()))
        data = data.next_context_data()
    return ids


@dataclass(slots=True)
class EvaluationKeys:
    """What the server gets: public key (to encrypt constants), relinearization keys and
    the Galois keys of the rotations the circuit uses (none unless it sums over the
    batch: select-rotation-keys-ckks)."""

    key_id: str
    public_key: seal.PublicKey
    relin_keys: seal.RelinKeys
    galois_keys: seal.GaloisKeys | None = None


@dataclass(slots=True)
class SecretKeys:
    """The client's keys: the secret key and the evaluation keys made with it."""

    key_id: str
    secret_key: seal.SecretKey
    evaluation: EvaluationKeys

    @classmethod
    def generate(cls, context: SealContext, rotations: tuple[int, ...] = ()) -> SecretKeys:
        """A fresh key set, with a Galois key for each slot rotation in `rotations`."""
        generator = seal.KeyGenerator(context.seal)
        # A random id ties ciphertexts and evaluation keys to this key set: data made with
        # another key set (same parameters) would decrypt to noise, so it is refused.
        key_id = secrets.token_hex(16)
        galois = None
        if rotations:
            galois = seal.GaloisKeys()
            generator.create_galois_keys(list(rotations), galois)
        evaluation = EvaluationKeys(
            key_id, generator.create_public_key(), generator.create_relin_keys(), galois
        )
        return cls(key_id, generator.secret_key(), evaluation)


class Encryptor:
    """Client side: encrypt (symmetric, with the secret key: less noise than public-key
    encryption) and decrypt."""

    def __init__(self, context: SealContext, keys: SecretKeys) -> None:
        self.context = context
        self._encryptor = seal.Encryptor(context.seal, keys.secret_key)
        self._decryptor = seal.Decryptor(context.seal, keys.secret_key)

    def encrypt(self, values: np.ndarray, scale: float) -> seal.Ciphertext:
        return self._encryptor.encrypt_symmetric(self.context.encode(values, scale, 0))

    def decrypt(self, ciphertext: seal.Ciphertext, count: int) -> np.ndarray:
        return self.context.decode(self._decryptor.decrypt(ciphertext), count)


def max_log_q(security: int, poly_degree: int) -> int | None:
    """The table's bound, None where the table has no entry (or no check: security 0)."""
    return MAX_LOG_Q.get(security, {}).get(poly_degree)
