"""What a TFHE circuit keeps in files, and what client and server send each other.

No secrets and no concrete here: the server side imports this module too.

Artifact files (beside the manifest and module.ir the runtime writes):
    tfhe.json          {"format": "fhec-tfhe", "format_version": 1, "concrete_python": ...,
                        "config": {...}, "statistics": {...}}
    circuit.mlir       the program concrete-python emitted (the server compiles it on load)
    client_specs.json  concrete's client specs: what keys and ciphertexts look like

Messages (a zip of concrete's serialized values and a JSON header), each naming the
program (a hash of its client specs) and the evaluation keys (a hash of their bytes)
it belongs to, so a mix-up is an error, not garbage.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fhec.ir.errors import ArtifactError, InputError

HEADER, MLIR, SPECS = "tfhe.json", "circuit.mlir", "client_specs.json"
FORMAT = "fhec-tfhe"
FORMAT_VERSION = 1
MESSAGE_FORMAT = "fhec-tfhe-values"


def read_header(files: Mapping[str, bytes], names: Sequence[str]) -> dict[str, object]:
    """tfhe.json, checked, once the files in `names` are known to be there."""
    for name in names:
        if name not in files:
            raise ArtifactError(f"the TFHE artifact lacks {name}", hint="compile the model again")
    try:
        header = json.loads(files[HEADER])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the TFHE artifact's {HEADER} is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError(f"the TFHE artifact's {HEADER} is not an fhec TFHE header")
    version = header.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ArtifactError(
            f"the TFHE artifact has format version {version!r}; this fhec reads 1 to "
            f"{FORMAT_VERSION}",
            hint="compile the model again with this fhec",
        )
    if not isinstance(header.get("config"), dict) or not isinstance(header.get("statistics"), dict):
        raise ArtifactError(f"the TFHE artifact's {HEADER} lacks its config or statistics")
    return header


def program_info(specs: bytes) -> dict[str, object]:
    """Concrete's client specs as JSON, without its (empty) TFHE-rs section."""
    info = json.loads(specs)
    if not isinstance(info, dict):
        raise ValueError("client specs are not a JSON object")
    info.pop("tfhers_specs", None)
    return info


def digest(data: bytes | Mapping[str, object]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Message:
    """Encrypted values for one batch, and whom they belong to."""

    kind: str  # "inputs" (client to server) or "outputs" (server to client)
    program: str
    keys: str
    request: str
    values: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        header = {
            "format": MESSAGE_FORMAT,
            "format_version": 1,
            "kind": self.kind,
            "program": self.program,
            "keys": self.keys,
            "request": self.request,
            "count": len(self.values),
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("header.json", json.dumps(header))
            for index, value in enumerate(self.values):
                archive.writestr(f"{index}.value", value)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, kind: str) -> Message:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                header = json.loads(archive.read("header.json"))
                values = tuple(archive.read(f"{i}.value") for i in range(int(header["count"])))
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
            raise InputError(f"the TFHE {kind} are not an fhec message ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != MESSAGE_FORMAT:
            raise InputError(f"the TFHE {kind} are not an fhec message")
        if header.get("kind") != kind:
            raise InputError(f"expected encrypted {kind}, got {header.get('kind')!r}")
        return cls(
            kind, str(header["program"]), str(header["keys"]), str(header["request"]), values
        )

    def check(self, program: str, keys: str) -> None:
        if self.program != program:
            raise InputError(
                f"these encrypted {self.kind} belong to another circuit",
                hint="encrypt with the client of the model this server runs",
            )
        if self.keys != keys:
            raise InputError(
                f"these encrypted {self.kind} were made under other keys than the evaluation keys",
                hint="give the server the evaluation keys of the client that encrypts",
            )
