"""The SEAL layer: parameters, keys, encoding, encryption, checked serialization."""

from __future__ import annotations

import re

import numpy as np
import pytest
import seal

from fhec.backends.ckks.seal_context import Encryptor, SealContext, SecretKeys
from fhec.backends.ckks.serialization import (
    CipherTensor,
    dump_ciphertexts,
    dump_evaluation_keys,
    dump_secret_keys,
    load_ciphertexts,
    load_evaluation_keys,
    load_secret_keys,
    pack,
)
from fhec.ir.errors import ArtifactError, FhecError
from fhec.ir.ops.ckks import MAX_LOG_Q, CkksParams

SMALL = CkksParams(2048, (40, 30, 30, 40), 30, 0)  # insecure: fast tests only
SECURE = CkksParams(8192, (60, 40, 40, 60), 40, 128)


@pytest.fixture(scope="module")
def small() -> SealContext:
    return SealContext(SMALL)


@pytest.mark.parametrize("security", [128, 192, 256])
def test_table_is_seals_own(security: int) -> None:
    level = {
        128: seal.sec_level_type.tc128,
        192: seal.sec_level_type.tc192,
        256: seal.sec_level_type.tc256,
    }[security]
    for degree, bits in MAX_LOG_Q[security].items():
        if degree <= 32768:  # SEAL's table stops there; 65536 is the standard's own entry
            assert seal.CoeffModulus.MaxBitCount(degree, level) == bits


def test_secure_context_has_its_chain() -> None:
    context = SealContext(SECURE)
    assert context.slot_count == 4096
    assert [p.bit_length() for p in context.primes] == [60, 40, 40, 60]
    assert context.prime_drift() < 1e-6
    assert context.level_of(context.parms_id(2)) == 2


def test_insecure_parameters_refused_at_128_bits() -> None:
    with pytest.raises(FhecError, match="exceed the 218 bits allowed for 128-bit security"):
        SealContext(CkksParams(8192, (60, 40, 40, 40, 60), 40, 128))
    with pytest.raises(FhecError, match="security 100 is not one of"):
        SealContext(CkksParams(8192, (60, 40, 60), 40, 100))
    with pytest.raises(FhecError, match="not a power of two"):
        SealContext(CkksParams(3000, (60, 40, 60), 40, 0))
    with pytest.raises(FhecError, match="outside the modulus chain"):
        SealContext(SMALL).parms_id(3)


def test_roundtrip_of_strided_values(small: SealContext) -> None:
    keys = SecretKeys.generate(small)
    codec = Encryptor(small, keys)
    grid = np.arange(40.0).reshape(4, 10) / 10.0
    column = grid[:, 3]  # strided: seal-python would read grid[0, 3:7] without the copy
    got = codec.decrypt(codec.encrypt(column, 2.0**30), 4)
    np.testing.assert_allclose(got, [0.3, 1.3, 2.3, 3.3], atol=1e-4)


def test_encode_at_a_lower_level(small: SealContext) -> None:
    plain = small.encode(0.5, 2.0**30, 2)
    assert small.level_of(plain.parms_id()) == 2
    with pytest.raises(FhecError, match="do not fit 1024 slots"):
        small.encode(np.zeros(1025), 2.0**30, 0)


def _tensor(small: SealContext, keys: SecretKeys, values: np.ndarray) -> CipherTensor:
    codec = Encryptor(small, keys)
    cts = np.empty(values.shape[1:], dtype=object)
    for index in np.ndindex(cts.shape):
        cts[index] = codec.encrypt(values[(slice(None), *index)], 2.0**30)
    return CipherTensor(cts, values.shape[0], 30, 0)


def test_ciphertexts_and_keys_roundtrip_through_bytes(small: SealContext) -> None:
    keys = SecretKeys.generate(small)
    values = np.linspace(-1, 1, 12).reshape(3, 2, 2)
    data = dump_ciphertexts({"x": _tensor(small, keys, values)}, small, keys.key_id)
    tensors, key_id = load_ciphertexts(data, small, keys.key_id)
    assert key_id == keys.key_id and tensors["x"].shape == (3, 2, 2)
    restored = load_secret_keys(dump_secret_keys(keys, small), small)
    codec = Encryptor(small, restored)
    got = codec.decrypt(tensors["x"].ciphertexts[1, 0], 3)
    np.testing.assert_allclose(got, values[:, 1, 0], atol=1e-4)
    evaluation = load_evaluation_keys(dump_evaluation_keys(keys.evaluation, small), small)
    assert evaluation.key_id == keys.key_id


def test_corrupted_ciphertext_bytes_refused(small: SealContext) -> None:
    keys = SecretKeys.generate(small)
    data = bytearray(
        dump_ciphertexts({"x": _tensor(small, keys, np.ones((2, 1)))}, small, keys.key_id)
    )
    data[-100] ^= 0x01  # one bit deep in a ciphertext: SEAL alone would not notice
    with pytest.raises(ArtifactError, match="corrupted \\(checksum mismatch\\)"):
        load_ciphertexts(bytes(data), small)
    with pytest.raises(ArtifactError, match="not fhec CKKS ciphertexts"):
        load_ciphertexts(b"garbage", small)
    with pytest.raises(ArtifactError, match="header is corrupted"):
        load_ciphertexts(b"FHECCKKS\xff\x00\x00\x00{", small)


def test_keys_and_ciphertexts_of_another_context_refused(small: SealContext) -> None:
    other = SealContext(CkksParams(2048, (40, 30, 40), 30, 0))
    keys = SecretKeys.generate(other)
    with pytest.raises(ArtifactError, match="made for other encryption parameters"):
        load_evaluation_keys(dump_evaluation_keys(keys.evaluation, other), small)
    data = dump_ciphertexts({"x": _tensor(other, keys, np.ones((2, 1)))}, other, keys.key_id)
    with pytest.raises(ArtifactError, match="made for other encryption parameters"):
        load_ciphertexts(data, small)


def test_ciphertexts_of_another_key_set_refused(small: SealContext) -> None:
    mine, theirs = SecretKeys.generate(small), SecretKeys.generate(small)
    data = dump_ciphertexts({"x": _tensor(small, theirs, np.ones((2, 1)))}, small, theirs.key_id)
    with pytest.raises(ArtifactError, match="belong to another key set"):
        load_ciphertexts(data, small, mine.key_id)
    with pytest.raises(ArtifactError, match="expected secret keys"):
        load_secret_keys(dump_evaluation_keys(mine.evaluation, small), small)


def test_modulus_seal_cannot_make_refused() -> None:
    # Only one prime of 17 bits is 1 mod 2N = 65536 (65537): SEAL finds too few.
    with pytest.raises(FhecError, match="SEAL cannot make the CKKS modulus"):
        SealContext(CkksParams(32768, (17, 17), 17, 0))


def _reheader(data: bytes, **changes: object) -> bytes:
    """`data` with header fields changed (the payload and its checksum kept)."""
    import json
    import struct

    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12 : 12 + length])
    header.update(changes)
    encoded = json.dumps(header).encode()
    return data[:8] + struct.pack("<I", len(encoded)) + encoded + data[12 + length :]


def test_malformed_envelopes_refused(small: SealContext) -> None:
    keys, other = SecretKeys.generate(small), SecretKeys.generate(small)
    ciphertext = _tensor(small, keys, np.ones((1, 1))).ciphertexts[0].to_string()
    entry = {"name": "x", "shape": [2], "count": 1, "scale_bits": 30, "level": 0}
    cases = [
        (
            load_evaluation_keys,
            pack("evaluation_keys", small, "k", None, [b"x"]),
            "wrong number of keys",
        ),
        (
            load_evaluation_keys,
            pack("evaluation_keys", small, "k", None, [b"x", b"y"]),
            "SEAL refuses the public key",
        ),
        (load_secret_keys, pack("secret_keys", small, "k", None, [b"x"]), "wrong number of parts"),
        (
            load_secret_keys,
            pack(
                "secret_keys",
                small,
                keys.key_id,
                None,
                [keys.secret_key.to_string(), dump_evaluation_keys(other.evaluation, small)],
            ),
            "key ids differ",
        ),
        (
            load_ciphertexts,
            pack("ciphertexts", small, "k", [entry], [ciphertext]),
            "missing ciphertexts",
        ),
        (
            load_ciphertexts,
            pack("ciphertexts", small, "k", [{**entry, "shape": [1]}], [ciphertext] * 2),
            "extra ciphertexts",
        ),
        (
            load_ciphertexts,
            pack("ciphertexts", small, "k", [{"name": "x"}], []),
            "corrupted ('shape')",
        ),
        (
            load_ciphertexts,
            _reheader(pack("ciphertexts", small, "k", [], []), format_version=2),
            "format version 2",
        ),
        (
            load_ciphertexts,
            _reheader(pack("ciphertexts", small, "k", [], [b"ab"]), sizes=[1]),
            "sizes do not add up",
        ),
    ]
    for load, data, found in cases:
        with pytest.raises(ArtifactError, match=re.escape(found)):
            load(data, small)  # type: ignore[operator]
