"""Artifacts: what they hold, and every way a damaged one is refused on load."""

from __future__ import annotations

import json

import artifact_edits as edits
import numpy as np
import pytest

import fhec
from fhec.ir.errors import ArtifactError
from fhec.runtime.artifact import FORMAT_VERSION, Artifact


@pytest.fixture(scope="module")
def data(mlp: fhec.CompiledModel) -> bytes:
    return mlp.to_bytes()


def _signature(data: bytes) -> dict[str, list[dict[str, object]]]:
    signature = edits.manifest(data)["signature"]
    assert isinstance(signature, dict)
    return signature


def test_an_artifact_holds_a_json_manifest_and_the_ir_only(
    data: bytes, mlp: fhec.CompiledModel
) -> None:
    files = edits.members(data)
    assert sorted(files) == ["manifest.json", "module.ir"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "fhec-artifact"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["backend"] == "reference"
    assert manifest["report"] == mlp.report
    assert files["module.ir"].decode() == mlp.ir


def test_backend_files_and_numpy_report_values_round_trip(mlp: fhec.CompiledModel) -> None:
    report = {"depth": np.int64(3), "scales": np.array([1.5, 2.0])}
    artifact = Artifact("reference", mlp.module, mlp.signature, mlp.pipeline, report)
    artifact.extra_files["keys.bin"] = b"\x00\x01binary"
    loaded = Artifact.from_bytes(artifact.to_bytes())
    assert loaded.extra_files == {"keys.bin": b"\x00\x01binary"}
    assert loaded.report == {"depth": 3, "scales": [1.5, 2.0]}
    assert loaded.module == mlp.module


def _wrong_input(data: bytes, **changes: object) -> bytes:
    signature = _signature(data)
    inputs = [{**signature["inputs"][0], **changes}]
    return edits.with_manifest(data, signature={**signature, "inputs": inputs})


def _wrong_output_name(data: bytes) -> bytes:
    signature = _signature(data)
    outputs = [{**signature["outputs"][0], "name": "logits"}]
    return edits.with_manifest(data, signature={**signature, "outputs": outputs})


DAMAGE = {
    "newer-version": (
        lambda d: edits.with_manifest(d, format_version=FORMAT_VERSION + 1),
        f"format version {FORMAT_VERSION + 1}; this fhec reads versions up to {FORMAT_VERSION}",
    ),
    "version-zero": (
        lambda d: edits.with_manifest(d, format_version=0),
        "unknown artifact format version 0",
    ),
    "version-missing": (
        lambda d: edits.with_manifest(d, format_version=None),
        "format_version is missing",
    ),
    "version-a-bool": (
        lambda d: edits.with_manifest(d, format_version=True),
        "format_version is missing",
    ),
    "wrong-format": (
        lambda d: edits.with_manifest(d, format="onnx"),
        "is not an fhec artifact",
    ),
    "manifest-a-list": (
        lambda d: edits.with_member(d, "manifest.json", b"[1, 2]"),
        "is not an fhec artifact",
    ),
    "manifest-not-json": (
        lambda d: edits.with_member(d, "manifest.json", b"{format: 1"),
        "manifest.json is not JSON",
    ),
    "manifest-not-utf8": (
        lambda d: edits.with_member(d, "manifest.json", b"\xff\xfe{}"),
        "manifest.json is not JSON",
    ),
    "no-manifest": (
        lambda d: edits.without_member(d, "manifest.json"),
        "has no manifest.json",
    ),
    "no-module-ir": (
        lambda d: edits.without_member(d, "module.ir"),
        "has no module.ir",
    ),
    "listed-file-missing": (
        lambda d: edits.with_manifest(d, files=["keys.bin"]),
        "has no files/keys.bin",
    ),
    "file-list-malformed": (
        lambda d: edits.with_manifest(d, files="keys.bin"),
        "the manifest's file list is malformed",
    ),
    "ir-unparsable": (
        lambda d: edits.edit_ir(d, "nn.relu", "nn.frobnicate"),
        "module.ir does not parse: line 7: unknown op 'nn.frobnicate'",
    ),
    "ir-not-utf8": (
        lambda d: edits.with_member(d, "module.ir", b"module \xff"),
        "is not a readable fhec artifact (UnicodeDecodeError",
    ),
    "ir-fails-verifier": (
        lambda d: edits.edit_ir(d, "nn.relu(%3) : tensor<1x3xf32", "nn.relu(%3) : tensor<1x7xf32"),
        "module.ir is not a valid module",
    ),
    "signature-input-shape": (
        lambda d: _wrong_input(d, shape=[2, 4]),
        "the manifest's inputs [x (2, 4) f32] do not match module.ir's [x (1, 4) f32]",
    ),
    "signature-input-name": (
        lambda d: _wrong_input(d, name="image"),
        "the manifest's inputs [image (1, 4) f32] do not match module.ir's [x (1, 4) f32]",
    ),
    "signature-input-dtype": (
        lambda d: _wrong_input(d, dtype="i64"),
        "the manifest's inputs [x (1, 4) i64] do not match",
    ),
    "signature-output-name": (
        _wrong_output_name,
        "the manifest's outputs [logits (1, 3) f32] do not match module.ir's [y (1, 3) f32]",
    ),
    "signature-unknown-dtype": (
        lambda d: _wrong_input(d, dtype="complex64"),
        "the manifest's signature is malformed",
    ),
    "signature-missing": (
        lambda d: edits.with_manifest(d, signature=None),
        "the manifest's signature is malformed",
    ),
    "batch-axis-outside-shape": (
        lambda d: _wrong_input(d, batch_axis=5),
        "'x' has batch axis 5 outside its shape (1, 4)",
    ),
    "backend-missing": (
        lambda d: edits.with_manifest(d, backend=None),
        "the manifest's 'backend' is missing or not a string",
    ),
    "pipeline-not-a-list": (
        lambda d: edits.with_manifest(d, pipeline="infer-shapes"),
        "the manifest's pipeline is not a list of pass names",
    ),
    "report-not-an-object": (
        lambda d: edits.with_manifest(d, report=[1]),
        "the manifest's report is not an object",
    ),
    "flipped-bytes": (edits.flip_bytes, "is not a readable fhec artifact"),
    "truncated": (edits.truncated, "is not a readable fhec artifact (BadZipFile"),
    "not-a-zip": (lambda d: b"hello", "is not a readable fhec artifact (BadZipFile"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_artifact_is_refused(data: bytes, damage: str) -> None:
    edit, message = DAMAGE[damage]
    with pytest.raises(ArtifactError) as raised:
        Artifact.from_bytes(edit(data), "'m.fhec'")
    text = str(raised.value)
    assert message in text
    assert text.startswith("'m.fhec'")
    assert "\n" not in text


def test_format_version_error_says_what_to_do(data: bytes) -> None:
    newer = edits.with_manifest(data, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ArtifactError) as raised:
        Artifact.from_bytes(newer)
    assert raised.value.hint == "upgrade fhec, or compile the model again with this version"
