"""`fhec compile / run / inspect` on small models: what they write and print."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx_builders
from cli_helpers import Workspace, run_fhec

import fhec
from fhec.ir.parser import parse_module


def test_compile_writes_the_artifact_beside_the_model_and_a_summary(tmp_path: Path) -> None:
    model = onnx_builders.mlp(tmp_path / "net.onnx")
    result = run_fhec("compile", model, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "net.fhec").is_file()
    lines = result.stdout.splitlines()
    assert lines[0] == f"wrote {tmp_path / 'net.fhec'}"
    assert "  x: float32[N, 4]" in lines
    assert "  y: float32[N, 3]" in lines
    assert "ops (5 nodes):" in lines
    assert any(line.split() == ["linalg.gemm", "1"] for line in lines)
    assert any(line.split() == ["nn.relu", "1"] for line in lines)
    assert result.stderr == ""


def test_compile_json_reports_ops_and_calibrated_ranges(workspace: Workspace) -> None:
    result = workspace.fhec(
        "compile", "mlp.onnx", "--calibration", "calibration.npz", "-o", "cal.fhec", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["artifact"] == "cal.fhec"
    assert (workspace / "cal.fhec").is_file()
    assert report["backend"] == "reference"
    assert report["ops"] == {"func.input": 1, "linalg.gemm": 1, "nn.relu": 1, "tensor.constant": 2}
    assert report["node_count"] == 5
    assert report["inputs"] == [{"name": "x", "shape": [1, 4], "dtype": "float32", "batch_axis": 0}]
    assert report["calibration_samples"] == 7
    samples = np.load(workspace / "calibration.npz")["x"]
    lo, hi = report["ranges"]["x"]
    assert (lo, hi) == (float(samples.min()), float(samples.max()))
    assert report["pipeline"][-1] == "annotate-ranges"


def test_compile_batch_size_and_run_of_more_samples(workspace: Workspace) -> None:
    result = workspace.fhec("compile", "mlp.onnx", "--batch-size", "4", "-o", "b4.fhec", "--json")
    assert json.loads(result.stdout)["inputs"][0]["shape"] == [4, 4]
    result = workspace.fhec("run", "b4.fhec", "--input", "inputs.npz", "--output", "b4_out.npz")
    assert result.returncode == 0, result.stderr
    inputs = dict(np.load(workspace / "inputs.npz"))
    expected = onnx_builders.onnxruntime_run(workspace / "mlp.onnx", inputs)["y"]
    got = np.load(workspace / "b4_out.npz")["y"]
    assert got.shape == (5, 3)  # 5 samples in chunks of 4, the padding dropped again
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_run_writes_outputs_that_match_onnxruntime(workspace: Workspace) -> None:
    result = workspace.fhec("run", "mlp.fhec", "--input", "inputs.npz", "--output", "out.npz")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote out.npz (y)"
    inputs = dict(np.load(workspace / "inputs.npz"))
    expected = onnx_builders.onnxruntime_run(workspace / "mlp.onnx", inputs)
    with np.load(workspace / "out.npz", allow_pickle=False) as outputs:
        assert outputs.files == ["y"]
        np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-4, atol=1e-5)


def test_run_json_prints_outputs_as_lists(workspace: Workspace) -> None:
    result = workspace.fhec("run", "mlp.fhec", "--input", "inputs.npz", "--json")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    inputs = dict(np.load(workspace / "inputs.npz"))
    expected = onnx_builders.onnxruntime_run(workspace / "mlp.onnx", inputs)
    np.testing.assert_allclose(np.array(outputs["y"]), expected["y"], rtol=1e-4, atol=1e-5)


def test_run_prints_a_table_of_outputs(workspace: Workspace) -> None:
    result = workspace.fhec("run", "mlp.fhec", "--input", "inputs.npz", "--mode", "simulate")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["output", "shape", "dtype"]
    assert row.split()[0] == "y"
    assert "(5, 3)" in row and "float32" in row


def test_run_skips_a_label_array_the_model_does_not_take(workspace: Workspace) -> None:
    x = np.ones((2, 4), np.float32)
    np.savez(workspace / "labelled.npz", x=x, label=np.array([0, 1]))
    result = workspace.fhec("run", "mlp.fhec", "--input", "labelled.npz", "--json")
    assert result.returncode == 0, result.stderr
    assert np.array(json.loads(result.stdout)["y"]).shape == (2, 3)


def test_compile_skips_a_label_array_in_calibration_data(workspace: Workspace) -> None:
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.savez(workspace / "cal_labelled.npz", x=x, label=np.array([0, 1]))
    result = workspace.fhec(
        "compile", "mlp.onnx", "--calibration", "cal_labelled.npz", "-o", "lab.fhec", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["calibration_samples"] == 2
    assert report["ranges"]["x"] == [-1.0, 1.0]


def test_inspect_model_prints_ir_after_the_whole_pipeline(workspace: Workspace) -> None:
    result = workspace.fhec("inspect", "mlp.onnx", "--full")
    assert result.returncode == 0, result.stderr
    module = parse_module(result.stdout)
    assert module == fhec.compile(workspace / "mlp.onnx").module
    assert 'loc("fc", "Gemm")' in result.stdout
    assert "#range{" in result.stdout  # annotate-ranges, the last pass, ran


def test_inspect_after_a_pass_stops_there(workspace: Workspace) -> None:
    result = workspace.fhec("inspect", "mlp.onnx", "--after", "canonicalize")
    assert result.returncode == 0, result.stderr
    assert "linalg.gemm" in result.stdout
    # annotate-secrecy and annotate-ranges come later in the pipeline
    assert "secret" not in result.stdout
    assert "#range" not in result.stdout
    second = workspace.fhec("inspect", "mlp.onnx", "--after", "fold-constants#2")
    assert second.returncode == 0, second.stderr


def test_inspect_elides_large_constants_unless_full(tmp_path: Path) -> None:
    model = onnx_builders.mlp(tmp_path / "wide.onnx", features=32)
    short = run_fhec("inspect", model, cwd=tmp_path).stdout
    assert 'dense<32x3xf32, "...">' in short
    full = run_fhec("inspect", model, "--full", cwd=tmp_path).stdout
    assert '"..."' not in full
    parse_module(full)


def test_inspect_artifact_prints_its_module(workspace: Workspace) -> None:
    result = workspace.fhec("inspect", "mlp.fhec", "--full")
    assert result.returncode == 0, result.stderr
    assert parse_module(result.stdout) == fhec.load(workspace / "mlp.fhec").module
    # an artifact named without the .fhec suffix is recognized by its content
    shutil.copy(workspace / "mlp.fhec", workspace / "renamed.bin")
    assert workspace.fhec("inspect", "renamed.bin", "--full").stdout == result.stdout


def test_input_shape_fixes_a_symbolic_dimension(workspace: Workspace) -> None:
    result = workspace.fhec(
        "compile", "symbolic.onnx", "--input-shape", "x=1x7", "-o", "sym7.fhec", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inputs"][0]["shape"] == [1, 7]


def test_calibration_data_fixes_a_symbolic_dimension(workspace: Workspace) -> None:
    np.savez(workspace / "cal5.npz", x=np.ones((3, 5), np.float32))
    result = workspace.fhec(
        "compile", "symbolic.onnx", "--calibration", "cal5.npz", "-o", "sym5.fhec", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inputs"][0]["shape"] == [1, 5]


def test_version_and_python_dash_m(tmp_path: Path) -> None:
    result = run_fhec("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"fhec {fhec.__version__}")
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "fhec", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"fhec {fhec.__version__}"
