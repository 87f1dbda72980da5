"""Compiled-model artifacts: a zip of a JSON manifest and the IR text. No pickle.

Layout (format version 1):
    manifest.json   {"format": "fhec-artifact", "format_version": 1, "backend": ...,
                     "signature": {...}, "pipeline": [...], "report": {...},
                     "files": [...]}
    module.ir       the IR after the backend's pipeline (parse(print(m)) == m)
    files/NAME      backend data listed in "files" (parameters, keys), never pickle
Every field is validated on load: the IR must parse and pass the verifier, and the
signature must match the module's inputs and outputs. Anything unexpected is an
ArtifactError that says what is wrong; nothing in an artifact reaches a traceback.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fhec.ir.errors import ArtifactError, InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.ops.core import InputOp
from fhec.ir.parser import IRParseError, parse_module
from fhec.ir.printer import print_module
from fhec.ir.signature import Signature, TensorSpec
from fhec.ir.verifier import verify

FORMAT = "fhec-artifact"
FORMAT_VERSION = 1
RECOMPILE = "compile the model again with `fhec compile`"


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
        text = json.dumps(manifest, indent=2, sort_keys=True, default=json_default)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", text)
            archive.writestr("module.ir", print_module(self.module))
            for name, data in sorted(self.extra_files.items()):
                archive.writestr(f"files/{name}", data)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact; a temporary file renamed at the end, so a failed write
        never leaves half an artifact under `path`."""
        path = Path(path)
        data = self.to_bytes()
        partial = path.with_name(path.name + ".partial")
        try:
            partial.write_bytes(data)
            partial.replace(path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ArtifactError(
                f"cannot write the artifact to '{path}': {exc.strerror or exc}",
                hint="check that the folder exists and is writable",
            ) from None

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "artifact") -> Artifact:
        with _unreadable_as_error(source), zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = _manifest(_member(archive, "manifest.json", source), source)
            module_text = _member(archive, "module.ir", source).decode("utf-8")
            extra = {
                name: _member(archive, f"files/{name}", source)
                for name in _file_list(manifest, source)
            }
        signature = _signature(manifest, source)
        module = _module(module_text, source)
        _check_signature(signature, module, source)
        report = manifest.get("report", {})
        if not isinstance(report, dict):
            raise ArtifactError(f"{source}: the manifest's report is not an object", hint=RECOMPILE)
        return cls(
            _string(manifest, "backend", source),
            module,
            signature,
            _pipeline(manifest, source),
            report,
            extra,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Artifact:
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"artifact '{path}' does not exist", hint="check the path")
        if path.is_dir():
            raise ArtifactError(
                f"'{path}' is a directory, not an fhec artifact",
                hint="give the .fhec file written by `fhec compile`",
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(
                f"cannot read '{path}': {exc.strerror or exc}", hint="check its permissions"
            ) from None
        return cls.from_bytes(data, f"'{path}'")


@contextmanager
def _unreadable_as_error(source: str) -> Iterator[None]:
    """Whatever a damaged zip raises (bad header, CRC, inflate errors, truncation, text
    that is not UTF-8) as one ArtifactError."""
    try:
        yield
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        UnicodeDecodeError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        reason = "damaged compressed data" if isinstance(exc, zlib.error) else type(exc).__name__
        raise ArtifactError(
            f"{source} is not a readable fhec artifact ({reason}: {exc})",
            hint=f"if it is an ONNX model, compile it first; otherwise {RECOMPILE}",
        ) from None


def _member(archive: zipfile.ZipFile, name: str, source: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise ArtifactError(f"{source} has no {name}", hint=RECOMPILE) from None


def _manifest(raw: bytes, source: str) -> dict[str, object]:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ArtifactError(
            f"{source}: manifest.json is not JSON ({exc})", hint=RECOMPILE
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(
            f"{source} is not an fhec artifact (its manifest names another format)",
            hint="give a file written by `fhec compile` or CompiledModel.save",
        )
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{source}: format_version is missing", hint=RECOMPILE)
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{source} has artifact format version {version}; "
            f"this fhec reads versions up to {FORMAT_VERSION}",
            hint="upgrade fhec, or compile the model again with this version",
        )
    if version < 1:
        raise ArtifactError(
            f"{source} has an unknown artifact format version {version}", hint=RECOMPILE
        )
    return manifest


def _string(manifest: dict[str, object], key: str, source: str) -> str:
    value = manifest.get(key)
    if not isinstance(value, str) or not value:
        raise ArtifactError(
            f"{source}: the manifest's {key!r} is missing or not a string", hint=RECOMPILE
        )
    return value


def _pipeline(manifest: dict[str, object], source: str) -> tuple[str, ...]:
    pipeline = manifest.get("pipeline")
    if not isinstance(pipeline, list) or not all(isinstance(p, str) for p in pipeline):
        raise ArtifactError(
            f"{source}: the manifest's pipeline is not a list of pass names", hint=RECOMPILE
        )
    return tuple(pipeline)


def _file_list(manifest: dict[str, object], source: str) -> list[str]:
    files = manifest.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ArtifactError(f"{source}: the manifest's file list is malformed", hint=RECOMPILE)
    return files


def _signature(manifest: dict[str, object], source: str) -> Signature:
    try:
        data = manifest["signature"]
        if not isinstance(data, dict):
            raise TypeError("not an object")
        signature = Signature.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{source}: the manifest's signature is malformed ({exc})", hint=RECOMPILE
        ) from None
    for spec in (*signature.inputs, *signature.outputs):
        if spec.batch_axis is not None and not 0 <= spec.batch_axis < len(spec.shape):
            raise ArtifactError(
                f"{source}: {spec.name!r} has batch axis {spec.batch_axis} "
                f"outside its shape {spec.shape}",
                hint=RECOMPILE,
            )
    return signature


def _module(text: str, source: str) -> Module:
    try:
        module = parse_module(text)
    except (IRParseError, ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{source}: module.ir does not parse: {exc}", hint=RECOMPILE) from None
    try:
        verify(module)
    except InternalCompilerError as exc:
        raise ArtifactError(
            f"{source}: module.ir is not a valid module: {exc}", hint=RECOMPILE
        ) from None
    return module


def _check_signature(signature: Signature, module: Module, source: str) -> None:
    """The manifest's interface must be the module's: same inputs and outputs, by name,
    shape and element type (a hand-edited manifest must not feed the wrong arrays)."""
    graph = module.graph
    actual_inputs = []
    for value in module.function.inputs:
        op = graph.node(value).op
        assert isinstance(op, InputOp)
        actual_inputs.append((op.input_name, op.type.shape, op.type.dtype))
    actual_outputs = [
        (name, graph.node(value).type.shape, graph.node(value).type.dtype)
        for name, value in module.function.outputs
    ]
    for kind, specs, actual in (
        ("inputs", signature.inputs, actual_inputs),
        ("outputs", signature.outputs, actual_outputs),
    ):
        declared = sorted(_spec_key(s) for s in specs)
        if declared != sorted(actual):
            raise ArtifactError(
                f"{source}: the manifest's {kind} {_describe(declared)} do not match "
                f"module.ir's {_describe(sorted(actual))}",
                hint=RECOMPILE,
            )


def _spec_key(spec: TensorSpec) -> tuple[str, tuple[int, ...], object]:
    return (spec.name, spec.shape, spec.dtype)


def _describe(items: list[tuple[str, tuple[int, ...], object]]) -> str:
    return "[" + ", ".join(f"{name} {shape} {dtype}" for name, shape, dtype in items) + "]"


def json_default(value: object) -> object:
    """`json.dumps(default=...)` for reports: backends may put numpy scalars or small
    arrays in them; they are written as JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
