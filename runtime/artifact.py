"""Compiled-model artifacts: a zip of a JSON manifest and the IR text. No pickle.

Layout (format version 1):
    manifest.json   {"format": "fhec-artifact", "format_version": 1, "backend": ...,
                     "signature": {...}, "pipeline": [...], "report": {...}}
    module.ir       the IR after the backend's pipeline (parse(print(m)) == m)
Every field is validated on load; anything unexpected is an ArtifactError.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fhec.ir.errors import ArtifactError
from fhec.ir.graph import Module
from fhec.ir.parser import IRParseError, parse_module
from fhec.ir.printer import print_module
from fhec.ir.signature import Signature
from fhec.ir.verifier import verify

FORMAT = "fhec-artifact"
FORMAT_VERSION = 1


@dataclass(slots=True)
class Artifact:
    backend: str
    module: Module
    signature: Signature
    pipeline: tuple[str, ...]
    report: dict[str, object] = field(default_factory=dict)
    extra_files: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backend": self.backend,
            "signature": self.signature.to_json(),
            "pipeline": list(self.pipeline),
            "report": self.report,
            "files": sorted(self.extra_files),
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
            archive.writestr("module.ir", print_module(self.module))
            for name, data in sorted(self.extra_files.items()):
                archive.writestr(f"files/{name}", data)
        return buffer.getvalue()

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "artifact") -> Artifact:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                manifest = _manifest(archive, source)
                module_text = archive.read("module.ir").decode()
                files = manifest.get("files", [])
                if not isinstance(files, list):
                    raise ArtifactError(f"{source}: the manifest's file list is malformed")
                extra = {str(name): archive.read(f"files/{name}") for name in files}
        except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, OSError) as exc:
            raise ArtifactError(
                f"{source} is not a readable fhec artifact ({type(exc).__name__}: {exc})",
                hint="compile the model again with `fhec compile`",
            ) from None
        try:
            module = parse_module(module_text)
            verify(module)
            signature = Signature.from_json(manifest["signature"])  # type: ignore[arg-type]
            pipeline = tuple(str(p) for p in manifest["pipeline"])  # type: ignore[attr-defined]
        except (IRParseError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{source} is corrupted: {exc}") from None
        except Exception as exc:
            raise ArtifactError(f"{source} is corrupted: {exc}") from None
        report = manifest.get("report", {})
        return cls(
            str(manifest["backend"]),
            module,
            signature,
            pipeline,
            report if isinstance(report, dict) else {},
            extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"artifact '{path}' does not exist", hint="check the path")
        return cls.from_bytes(path.read_bytes(), f"'{path}'")


def _manifest(archive: zipfile.ZipFile, source: str) -> dict[str, object]:
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{source}: manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{source} is not an fhec artifact")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{source}: format_version is missing")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{source} has artifact format version {version}; this fhec reads up to {FORMAT_VERSION}",
            hint="upgrade fhec, or compile the model again with this version",
        )
    if version < 1:
        raise ArtifactError(f"{source} has an unknown artifact format version {version}")
    return manifest
