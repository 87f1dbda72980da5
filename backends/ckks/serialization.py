"""Bytes for keys and ciphertexts: SEAL's own serialization in a checked envelope.

    b"FHECCKKS" | u32 header length | header (JSON) | payload blobs, back to back

The header names the kind of data, the format version, the context fingerprint (the
encryption parameters), the key set's id, the blob sizes and a SHA-256 of the payload.
Loading checks all of them before SEAL sees a byte, so keys or ciphertexts of another
context or key set, and corrupted bytes, are each refused with a clear ArtifactError.
No pickle.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import seal

from fhec.backends.ckks.seal_context import EvaluationKeys, SealContext, SecretKeys
from fhec.ir.errors import ArtifactError

MAGIC = b"FHECCKKS"
FORMAT_VERSION = 1
_LENGTH = struct.Struct("<I")
T = TypeVar("T")


@dataclass(slots=True)
class CipherTensor:
    """A secret tensor in the batch layout: `ciphertexts` (a numpy object array of the
    per-sample shape) each hold one element of `count` samples in their slots, at the
    scale and level the compiler planned (the true SEAL scale drifts a little from it)."""

    ciphertexts: np.ndarray
    count: int
    scale_bits: int
    level: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape with the batch axis first, as in the IR."""
        return (self.count, *self.ciphertexts.shape)


def pack(kind: str, context: SealContext, key_id: str, meta: object, blobs: list[bytes]) -> bytes:
    payload = b"".join(blobs)
    header = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "context": context.fingerprint,
        "key_id": key_id,
        "meta": meta,
        "sizes": [len(b) for b in blobs],
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded + payload


def unpack(
    data: bytes, kind: str, context: SealContext, key_id: str | None = None
) -> tuple[dict[str, object], list[bytes]]:
    """The header and blobs of `data`, checked to be `kind` data of `context` (and of the
    key set `key_id` when given)."""
    what = kind.replace("_", " ")
    if not isinstance(data, bytes | bytearray) or not data.startswith(MAGIC):
        raise ArtifactError(f"these bytes are not fhec CKKS {what}", hint="pass what fhec wrote")
    header = _header(data, what)
    if header.get("kind") != kind:
        raise ArtifactError(f"these bytes hold CKKS {header.get('kind')}, expected {what}")
    version = header.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ArtifactError(f"CKKS {what} of format version {version}; this fhec reads 1")
    if header.get("context") != context.fingerprint:
        raise ArtifactError(
            f"the CKKS {what} were made for other encryption parameters "
            f"(context {header.get('context')}, this circuit's is {context.fingerprint})",
            hint="use keys and ciphertexts made by this circuit's client",
        )
    if key_id is not None and header.get("key_id") != key_id:
        raise ArtifactError(
            f"the CKKS {what} belong to another key set "
            f"({header.get('key_id')}, expected {key_id})",
            hint="encrypt with the client whose evaluation keys the server holds",
        )
    return header, _blobs(data, header, what)


def _header(data: bytes, what: str) -> dict[str, object]:
    start = len(MAGIC) + _LENGTH.size
    try:
        (length,) = _LENGTH.unpack_from(data, len(MAGIC))
        header = json.loads(data[start : start + length])
    except (struct.error, ValueError) as exc:
        raise ArtifactError(f"CKKS {what}: the header is corrupted ({exc})") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"CKKS {what}: the header is corrupted")
    header["_payload_start"] = start + length
    return header


def _blobs(data: bytes, header: dict[str, object], what: str) -> list[bytes]:
    start, sizes = header["_payload_start"], header.get("sizes")
    assert isinstance(start, int)
    payload = bytes(data[start:])
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ArtifactError(f"CKKS {what} are corrupted (checksum mismatch)")
    if not isinstance(sizes, list) or sum(int(s) for s in sizes) != len(payload):
        raise ArtifactError(f"CKKS {what} are corrupted (sizes do not add up)")
    blobs: list[bytes] = []
    offset = 0
    for size in sizes:
        blobs.append(payload[offset : offset + int(size)])
        offset += int(size)
    return blobs


def _seal_load(what: str, load: Callable[[], T]) -> T:
    try:
        return load()
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"SEAL refuses the {what}: {exc}") from None


# -- keys -----------------------------------------------------------------------


def dump_evaluation_keys(keys: EvaluationKeys, context: SealContext) -> bytes:
    blobs = [keys.public_key.to_string(), keys.relin_keys.to_string()]
    if keys.galois_keys is not None:
        blobs.append(keys.galois_keys.to_string())
    return pack("evaluation_keys", context, keys.key_id, None, blobs)


def load_evaluation_keys(data: bytes, context: SealContext) -> EvaluationKeys:
    header, blobs = unpack(data, "evaluation_keys", context)
    if len(blobs) not in (2, 3):
        raise ArtifactError("CKKS evaluation keys are corrupted (wrong number of keys)")
    ctx = context.seal
    public = _seal_load("public key", lambda: ctx.from_public_str(blobs[0]))
    relin = _seal_load("relinearization keys", lambda: ctx.from_relin_str(blobs[1]))
    galois = (
        _seal_load("Galois keys", lambda: ctx.from_galois_str(blobs[2]))
        if len(blobs) == 3
        else None
    )
    return EvaluationKeys(str(header["key_id"]), public, relin, galois)


def dump_secret_keys(keys: SecretKeys, context: SealContext) -> bytes:
    """The client's whole key set (secret key included): keep these bytes private."""
    evaluation = dump_evaluation_keys(keys.evaluation, context)
    return pack(
        "secret_keys", context, keys.key_id, None, [keys.secret_key.to_string(), evaluation]
    )


def load_secret_keys(data: bytes, context: SealContext) -> SecretKeys:
    header, blobs = unpack(data, "secret_keys", context)
    if len(blobs) != 2:
        raise ArtifactError("CKKS secret keys are corrupted (wrong number of parts)")
    secret = _seal_load("secret key", lambda: context.seal.from_secret_str(blobs[0]))
    evaluation = load_evaluation_keys(blobs[1], context)
    if evaluation.key_id != header["key_id"]:
        raise ArtifactError("CKKS secret keys are corrupted (key ids differ)")
    return SecretKeys(str(header["key_id"]), secret, evaluation)


# -- ciphertexts ----------------------------------------------------------------


def dump_ciphertexts(
    tensors: Mapping[str, CipherTensor], context: SealContext, key_id: str
) -> bytes:
    meta: list[dict[str, object]] = []
    blobs: list[bytes] = []
    for name, tensor in tensors.items():
        meta.append(
            {
                "name": name,
                "shape": list(tensor.ciphertexts.shape),
                "count": tensor.count,
                "scale_bits": tensor.scale_bits,
                "level": tensor.level,
            }
        )
        blobs.extend(c.to_string() for c in tensor.ciphertexts.reshape(-1))
    return pack("ciphertexts", context, key_id, meta, blobs)


def load_ciphertexts(
    data: bytes, context: SealContext, key_id: str | None = None
) -> tuple[dict[str, CipherTensor], str]:
    """The tensors in `data` and the id of the key set they were encrypted under."""
    header, blobs = unpack(data, "ciphertexts", context, key_id)
    tensors: dict[str, CipherTensor] = {}
    position = 0
    try:
        for entry in header["meta"]:  # type: ignore[attr-defined]
            shape = tuple(int(d) for d in entry["shape"])
            size = int(np.prod(shape, dtype=np.int64))
            cts = [_load_ciphertext(b, context) for b in blobs[position : position + size]]
            if len(cts) != size:
                raise ArtifactError("CKKS ciphertexts are corrupted (missing ciphertexts)")
            position += size
            array = np.empty(len(cts), dtype=object)
            array[:] = cts
            tensors[str(entry["name"])] = CipherTensor(
                array.reshape(shape),
                int(entry["count"]),
                int(entry["scale_bits"]),
                int(entry["level"]),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"CKKS ciphertexts are corrupted ({exc})") from None
    if position != len(blobs):
        raise ArtifactError("CKKS ciphertexts are corrupted (extra ciphertexts)")
    return tensors, str(header["key_id"])


def _load_ciphertext(blob: bytes, context: SealContext) -> seal.Ciphertext:
    ciphertext = seal.Ciphertext()
    _seal_load("ciphertext", lambda: ciphertext.load_bytes(context.seal, blob))
    return ciphertext
