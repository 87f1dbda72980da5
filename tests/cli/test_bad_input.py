"""Every user mistake: exit code 2, one `error:` line that says what is wrong and what
to do, no traceback.

The broken files are written once. The mistakes the CLI contract names run as real
`fhec` processes (concurrently; each case is then checked as its own test); the
further ones call `fhec.cli.main` in this process, where a traceback would be an
exception escaping `main`, to keep the folder fast.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import artifact_edits as edits
import numpy as np
import onnx_builders
import pytest
from cli_helpers import Result, Workspace, assert_user_error

from fhec.cli import main


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    fragments: tuple[str, ...]
    # Run as a separate `fhec` process (the contract's list), else through main().
    process: bool = False


CASES = [
    # -- models -------------------------------------------------------------------
    Case(
        "truncated-onnx",
        ("compile", "truncated.onnx"),
        ("'truncated.onnx' is not a readable ONNX model", "export the model again"),
        process=True,
    ),
    Case(
        "text-file-as-model",
        ("compile", "notes.txt"),
        ("'notes.txt' is not a readable ONNX model", "of another format"),
        process=True,
    ),
    Case(
        "missing-model",
        ("compile", "nowhere.onnx"),
        ("model file 'nowhere.onnx' does not exist", "check the path"),
        process=True,
    ),
    Case(
        "unsupported-op",
        ("compile", "nms.onnx"),
        (
            "node 'nms' (NonMaxSuppression)",
            "op NonMaxSuppression of domain 'ai.onnx' (opset 17) is not supported",
            "docs/ops.md",
        ),
        process=True,
    ),
    Case(
        "unsupported-custom-domain-op",
        ("compile", "frob.onnx"),
        ("node 'frob' (Frobnicate)", "domain 'com.example' (opset 1)", "not supported"),
    ),
    Case(
        "symbolic-non-batch-dimension",
        ("compile", "symbolic.onnx"),
        ("input 'x': dimension 1 is symbolic ('C')", "--input-shape x="),
        process=True,
    ),
    Case(
        "input-shape-not-fitting-the-model",
        ("compile", "mlp.onnx", "--input-shape", "x=1x5", "-o", "never.fhec"),
        ("input 'x': shape (1, 5) does not fit the declared ?x4",),
    ),
    Case(
        "input-shape-of-no-input",
        ("compile", "mlp.onnx", "--input-shape", "q=1x4", "-o", "never.fhec"),
        ("a shape is given for 'q', which is not an input", "inputs are: x"),
    ),
    Case(
        "input-shape-given-twice",
        ("compile", "mlp.onnx", "--input-shape", "x=1x4", "--input-shape", "x=2x4"),
        ("--input-shape gives the shape of 'x' twice",),
    ),
    Case(
        "artifact-given-to-compile",
        ("compile", "mlp.fhec"),
        ("'mlp.fhec' is an fhec artifact (a zip file), not an ONNX model", "fhec run mlp.fhec"),
    ),
    Case(
        "output-would-overwrite-the-model",
        ("compile", "mlp.onnx", "-o", "mlp.onnx"),
        ("would overwrite the model", "-o OUT"),
    ),
    Case(
        "unwritable-output",
        ("compile", "mlp.onnx", "-o", "no/such/folder/out.fhec"),
        ("cannot write the artifact to 'no/such/folder/out.fhec'", "folder exists"),
    ),
    # -- input files --------------------------------------------------------------
    Case(
        "wrong-input-name",
        ("run", "mlp.fhec", "--input", "wrong_name.npz"),
        ("unknown input 'z'", "the model's inputs are: x (N, 4)"),
        process=True,
    ),
    Case(
        "wrong-input-shape",
        ("run", "mlp.fhec", "--input", "wrong_shape.npz"),
        ("input 'x' has shape (3, 5), expected (N, 4)", "reshape"),
        process=True,
    ),
    Case(
        "float-data-for-int-input",
        ("run", "ints.fhec", "--input", "float_ids.npz"),
        ("input 'ids' holds floats (float32), the model expects int64", ".astype('int64')"),
        process=True,
    ),
    Case(
        "missing-input",
        ("run", "mlp.fhec", "--input", "empty.npz"),
        ("missing input 'x'", "shape (N, 4)", "float32"),
        process=True,
    ),
    Case(
        "missing-input-file",
        ("run", "mlp.fhec", "--input", "nowhere.npz"),
        ("input file 'nowhere.npz' does not exist", "check the path"),
    ),
    Case(
        "text-file-as-inputs",
        ("run", "mlp.fhec", "--input", "notes.txt"),
        ("input file 'notes.txt' is not an .npz file", "numpy.savez"),
    ),
    Case(
        "npy-file-as-inputs",
        ("run", "mlp.fhec", "--input", "single.npy"),
        ("'single.npy' is an .npy file holding one unnamed array", "numpy.savez"),
    ),
    Case(
        "object-array-needing-pickle",
        ("run", "mlp.fhec", "--input", "objects.npz"),
        ("'objects.npz' is not a readable .npz file", "Object arrays cannot be loaded"),
    ),
    Case(
        "float-calibration-for-int-input",
        ("compile", "ints.onnx", "--calibration", "float_ids.npz", "-o", "never.fhec"),
        ("calibration input 'ids' holds floats",),
    ),
    Case(
        "calibration-with-nan",
        ("compile", "mlp.onnx", "--calibration", "nan.npz", "-o", "never.fhec"),
        ("calibration input 'x' holds NaN or infinite values", "remove those samples"),
    ),
    Case(
        "unwritable-run-output",
        ("run", "mlp.fhec", "--input", "inputs.npz", "--output", "no/such/out.npz"),
        ("cannot write 'no/such/out.npz'", "folder exists"),
    ),
    # -- artifacts ----------------------------------------------------------------
    Case(
        "missing-artifact",
        ("run", "nowhere.fhec", "--input", "inputs.npz"),
        ("artifact 'nowhere.fhec' does not exist", "check the path"),
        process=True,
    ),
    Case(
        "newer-format-version",
        ("run", "newer.fhec", "--input", "inputs.npz"),
        ("format version 2; this fhec reads versions up to 1", "upgrade fhec"),
        process=True,
    ),
    Case(
        "flipped-bytes",
        ("run", "flipped.fhec", "--input", "inputs.npz"),
        ("'flipped.fhec' is not a readable fhec artifact", "compile the model again"),
        process=True,
    ),
    Case(
        "truncated-zip",
        ("run", "truncated.fhec", "--input", "inputs.npz"),
        ("'truncated.fhec' is not a readable fhec artifact", "compile the model again"),
        process=True,
    ),
    Case(
        "edited-module-ir-unparsable",
        ("run", "unparsable.fhec", "--input", "inputs.npz"),
        ("module.ir does not parse: line 4", "compile the model again"),
        process=True,
    ),
    Case(
        "edited-module-ir-fails-verifier",
        ("run", "unverified.fhec", "--input", "inputs.npz"),
        ("module.ir is not a valid module", "type rule gives", "compile the model again"),
    ),
    Case(
        "signature-not-matching-module",
        ("run", "signature.fhec", "--input", "inputs.npz"),
        ("the manifest's inputs [x (1, 9) f32] do not match module.ir's [x (1, 4) f32]",),
    ),
    Case(
        "wrong-format-field",
        ("run", "other_format.fhec", "--input", "inputs.npz"),
        ("is not an fhec artifact", "fhec compile"),
    ),
    Case(
        "artifact-without-module-ir",
        ("run", "no_ir.fhec", "--input", "inputs.npz"),
        ("'no_ir.fhec' has no module.ir", "compile the model again"),
    ),
    Case(
        "onnx-model-given-to-run",
        ("run", "mlp.onnx", "--input", "inputs.npz"),
        ("'mlp.onnx' is not a readable fhec artifact", "if it is an ONNX model, compile it"),
    ),
    Case(
        "corrupted-artifact-to-inspect",
        ("inspect", "flipped.fhec"),
        ("'flipped.fhec' is not a readable fhec artifact",),
    ),
    # -- arguments ----------------------------------------------------------------
    Case(
        "bad-input-shape-syntax",
        ("compile", "mlp.onnx", "--input-shape", "x=1xq"),
        ("argument --input-shape", "NAME=DIMS", "e.g. input=1x3x8x8", "got 'x=1xq'"),
        process=True,
    ),
    Case(
        "input-shape-without-name",
        ("compile", "mlp.onnx", "--input-shape", "1x4"),
        ("argument --input-shape", "got '1x4'"),
    ),
    Case(
        "unknown-backend",
        ("compile", "mlp.onnx", "--backend", "paillier"),
        ("argument --backend: invalid choice: 'paillier'", "reference", "fhec compile --help"),
        process=True,
    ),
    Case(
        "zero-batch-size",
        ("compile", "mlp.onnx", "--batch-size", "0"),
        ("argument --batch-size: expected a positive integer, got 0",),
    ),
    Case(
        "unknown-command",
        ("frobnicate",),
        ("invalid choice: 'frobnicate'", "compile", "see `fhec --help`"),
        process=True,
    ),
    Case("no-command", (), ("the following arguments are required: COMMAND",)),
    Case(
        "run-without-input",
        ("run", "mlp.fhec"),
        ("the following arguments are required: --input", "fhec run --help"),
    ),
    Case(
        "unknown-run-mode",
        ("run", "mlp.fhec", "--input", "inputs.npz", "--mode", "fast"),
        ("argument --mode: invalid choice: 'fast'", "execute", "simulate"),
    ),
    Case(
        "unknown-pass-for-after",
        ("inspect", "mlp.onnx", "--after", "fold-everything"),
        (
            "the reference pipeline has no pass 'fold-everything'",
            "infer-shapes, fold-constants, fold-batchnorm",
        ),
    ),
    Case(
        "after-on-an-artifact",
        ("inspect", "mlp.fhec", "--after", "infer-shapes"),
        ("--after applies to ONNX models", "inspect the .onnx model instead"),
    ),
    Case(
        "demo-model-without-data",
        ("demo", "--model", "mlp.onnx"),
        ("--model and --data go together", "give both or neither"),
    ),
    # -- backend options (--option BACKEND.OPTION=VALUE) -------------------------------
    Case(
        "tfhe-unknown-option",
        ("compile", "mlp.onnx", "--backend", "tfhe", "--calibration", "inputs.npz",
         "--option", "tfhe.bogus=1", "-o", "never.fhec"),
        ("the tfhe backend has no option 'bogus'", "global_p_error"),
    ),
    Case(
        "tfhe-option-not-a-number",
        ("compile", "mlp.onnx", "--backend", "tfhe", "--calibration", "inputs.npz",
         "--option", "tfhe.p_error=often", "-o", "never.fhec"),
        ("tfhe option p_error='often'", "expected a number"),
    ),
    Case(
        "ckks-has-no-backend-options",
        ("compile", "mlp.onnx", "--backend", "ckks", "--calibration", "inputs.npz",
         "--option", "ckks.scale=30", "-o", "never.fhec"),
        ("the ckks backend has no option 'scale'", "select-params-ckks"),
    ),
]


def _write_broken_files(root: Path) -> None:
    onnx_builders.non_max_suppression(root / "nms.onnx")
    onnx_builders.custom_domain_op(root / "frob.onnx")
    model = (root / "mlp.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(model[: len(model) // 2])
    (root / "notes.txt").write_text("These are my notes, not a model.\n")
    np.savez(root / "wrong_name.npz", z=np.ones((3, 4), np.float32))
    np.savez(root / "wrong_shape.npz", x=np.ones((3, 5), np.float32))
    np.savez(root / "float_ids.npz", ids=np.ones((3, 3), np.float32))
    np.savez(root / "empty.npz")
    np.savez(root / "nan.npz", x=np.array([[0, 1, np.nan, 2]], np.float32))
    np.save(root / "single.npy", np.ones((3, 4), np.float32))
    np.savez(root / "objects.npz", x=np.array([{"a": 1}, None], dtype=object))
    artifact = (root / "mlp.fhec").read_bytes()
    signature = edits.manifest(artifact)["signature"]
    assert isinstance(signature, dict)
    wrong_signature = {**signature, "inputs": [{**signature["inputs"][0], "shape": [1, 9]}]}
    broken = {
        "newer.fhec": edits.with_manifest(artifact, format_version=2),
        "flipped.fhec": edits.flip_bytes(artifact),
        "truncated.fhec": edits.truncated(artifact),
        "unparsable.fhec": edits.edit_ir(artifact, "tensor.constant()", "tensor.constant(((("),
        "unverified.fhec": edits.edit_ir(
            artifact, "nn.relu(%3) : tensor<1x3xf32", "nn.relu(%3) : tensor<1x5xf32"
        ),
        "signature.fhec": edits.with_manifest(artifact, signature=wrong_signature),
        "other_format.fhec": edits.with_manifest(artifact, format="zip-of-something"),
        "no_ir.fhec": edits.without_member(artifact, "module.ir"),
    }
    for name, data in broken.items():
        (root / name).write_bytes(data)


@pytest.fixture(scope="module")
def results(workspace: Workspace) -> dict[str, Result]:
    """The outcome of every `process` case, run as `fhec` processes side by side."""
    _write_broken_files(workspace.root)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case.name: pool.submit(workspace.fhec, *case.args) for case in CASES if case.process
        }
        return {name: future.result() for name, future in futures.items()}


def _in_process(args: tuple[str, ...], root: Path, capsys: pytest.CaptureFixture[str]) -> Result:
    previous = Path.cwd()
    os.chdir(root)
    try:
        code = main(list(args))
    finally:
        os.chdir(previous)
    out, err = capsys.readouterr()
    return Result(code, out, err)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_user_error(
    case: Case,
    results: dict[str, Result],
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = results[case.name] if case.process else _in_process(case.args, workspace.root, capsys)
    assert_user_error(result, *case.fragments)
    assert result.stdout == ""
    assert not (workspace / "never.fhec").exists()
