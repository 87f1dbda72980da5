"""The API raises the same FhecError subclasses the CLI reports (never SystemExit), each
saying what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec import ArtifactError, CompileError, FhecError, InputError

X = np.ones((3, 4), np.float32)


# -- compile: the model and the options ----------------------------------------------


def test_truncated_model_is_an_fhec_error(tmp_path: Path, models: Path) -> None:
    data = (models / "mlp.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(FhecError, match="is not a readable ONNX model"):
        fhec.compile(tmp_path / "cut.onnx")


def test_missing_model_is_an_fhec_error(tmp_path: Path) -> None:
    with pytest.raises(FhecError, match="does not exist"):
        fhec.compile(tmp_path / "nowhere.onnx")


def test_unsupported_op_is_a_compile_error_naming_the_node(models: Path) -> None:
    with pytest.raises(CompileError, match="opset 17") as raised:
        fhec.compile(models / "nms.onnx")
    assert raised.value.location is not None
    assert (raised.value.location.name, raised.value.location.op_type) == (
        "nms",
        "NonMaxSuppression",
    )


def test_symbolic_dimension_needs_a_shape(models: Path) -> None:
    with pytest.raises(FhecError, match=r"dimension 1 is symbolic \('C'\)"):
        fhec.compile(models / "symbolic.onnx")
    fixed = fhec.compile(models / "symbolic.onnx", input_shapes={"x": (2, 3)})
    assert fixed.signature.inputs[0].shape == (2, 3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "paillier"}, "unknown backend 'paillier'; choose one of: reference"),
        ({"batch_size": 0}, "batch size must be at least 1, got 0"),
        ({"batch_size": "2"}, "batch size must be an integer, got '2'"),
        ({"batch_size": True}, "batch size must be an integer, got True"),
        ({"input_shapes": [(1, 4)]}, "input_shapes must be a dict"),
        ({"input_shapes": {"x": (1, -4)}}, "the shape given for input 'x' is"),
        ({"input_shapes": {"x": "1x4"}}, "give a sequence of positive integers"),
        ({"pipeline": "infer-shapes"}, "pipeline must be a list of pass names"),
        ({"pipeline": ["no-such-pass"]}, "unknown pass 'no-such-pass'"),
    ],
)
def test_bad_options(models: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(FhecError) as raised:
        fhec.compile(models / "mlp.onnx", **options)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_model_of_another_type(models: Path) -> None:
    with pytest.raises(
        FhecError, match=r"expected a path to an \.onnx file or an onnx\.ModelProto"
    ):
        fhec.compile(b"not a model")  # type: ignore[arg-type]


# -- calibration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "calibration", "message"),
    [
        ("mlp", X, "calibration must be a dict of arrays or a list of such dicts, got ndarray"),
        ("mlp", "x", "calibration must be a dict of arrays or a list of such dicts, got str"),
        ("mlp", [], "calibration is an empty list"),
        ("mlp", [{"x": X}, 3], "calibration item 1 is of type int, not a dict of arrays"),
        ("mlp", {"z": X}, "unknown calibration input 'z'; the model's inputs are: x (N, 4)"),
        ("mlp", {}, "missing calibration input 'x'"),
        ("mlp", {"x": np.ones((3, 5), np.float32)}, "calibration input 'x' has shape (3, 5)"),
        ("mlp", {"x": np.full((3, 4), "a")}, "calibration input 'x' has element type <U1"),
        ("symbolic", {"x": [[1.0, 2.0], [3.0]]}, "calibration input 'x' is not an array"),
        ("mlp", {"x": np.full((2, 4), np.inf, np.float32)}, "holds NaN or infinite values"),
        ("mlp", {"x": np.ones((0, 4), np.float32)}, "calibration inputs hold no samples"),
        ("ints", {"ids": np.ones((2, 3))}, "calibration input 'ids' holds floats (float64)"),
        (
            "two",
            {"a": np.ones((2, 2), np.float32), "b": np.ones((3, 2), np.float32)},
            "calibration inputs hold different numbers of samples (a: 2, b: 3)",
        ),
    ],
)
def test_bad_calibration(models: Path, model: str, calibration: object, message: str) -> None:
    with pytest.raises(InputError) as raised:
        fhec.compile(models / f"{model}.onnx", calibration=calibration)  # type: ignore[arg-type]
    assert message in str(raised.value)


# -- run -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "inputs", "message"),
    [
        ("mlp", [X], "inputs must be a dict {input name: array}, got list"),
        ("mlp", {"x": X, "z": X}, "unknown input 'z'"),
        ("mlp", {}, "missing input 'x'; give an array of shape (N, 4) with N samples"),
        ("mlp", {"x": np.ones(4, np.float32)}, "input 'x' has shape (4,), expected (N, 4)"),
        ("mlp", {"x": [[1, 2, 3, 4], [1, 2]]}, "input 'x' is not an array"),
        ("mlp", {"x": np.ones((0, 4), np.float32)}, "inputs hold no samples"),
        ("ints", {"ids": np.ones((2, 3), np.float32)}, "holds floats (float32)"),
        ("int8", {"ids": np.array([[1, 2, 300]])}, "holds values in [1, 300], outside"),
        (
            "two",
            {"a": np.ones((1, 2), np.float32), "b": np.ones((4, 2), np.float32)},
            "inputs hold different numbers of samples (a: 1, b: 4)",
        ),
    ],
)
def test_bad_inputs(models: Path, model: str, inputs: object, message: str) -> None:
    compiled = fhec.compile(models / f"{model}.onnx")
    with pytest.raises(InputError) as raised:
        compiled.run(inputs)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_unknown_run_mode(mlp: fhec.CompiledModel) -> None:
    with pytest.raises(InputError, match="unknown run mode 'fast'; use one of: execute, simulate"):
        mlp.run({"x": X}, mode="fast")


# -- save and load -------------------------------------------------------------------


def test_load_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist; check the path"):
        fhec.load(tmp_path / "nowhere.fhec")


def test_load_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="is a directory, not an fhec artifact"):
        fhec.load(tmp_path)


def test_load_an_artifact_of_a_backend_this_fhec_lacks(
    tmp_path: Path, mlp: fhec.CompiledModel
) -> None:
    import artifact_edits

    path = tmp_path / "ckks.fhec"
    path.write_bytes(artifact_edits.with_manifest(mlp.to_bytes(), backend="quantum"))
    with pytest.raises(ArtifactError, match="compiled for backend 'quantum', which this fhec"):
        fhec.load(path)


def test_save_into_a_missing_folder(tmp_path: Path, mlp: fhec.CompiledModel) -> None:
    with pytest.raises(ArtifactError, match="cannot write the artifact to"):
        mlp.save(tmp_path / "no" / "such" / "m.fhec")
