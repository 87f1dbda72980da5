"""`fhec demo`: the table, on a small model and data written here (and on the bundled
digits model when it is present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_builders
import pytest
from cli_helpers import assert_user_error, run_fhec

from fhec.api import BACKENDS
from fhec.demo import DEMO_DATA, DEMO_MODEL, accuracy, run_demo
from fhec.ir.errors import InputError

BUNDLED = Path(__file__).parents[2] / "fhec" / "data"


def _demo_files(folder: Path) -> tuple[Path, Path]:
    model = onnx_builders.mlp(folder / "tiny.onnx")
    x = np.random.default_rng(3).standard_normal((12, 4)).astype(np.float32)
    expected = onnx_builders.onnxruntime_run(model, {"x": x})["y"]
    labels = expected.argmax(axis=1)
    labels[:3] = (labels[:3] + 1) % 3  # three wrong labels: accuracy 9/12
    np.savez(folder / "tiny.npz", x=x, label=labels)
    return model, folder / "tiny.npz"


def test_demo_prints_one_row_per_backend(tmp_path: Path) -> None:
    model, data = _demo_files(tmp_path)
    result = run_fhec("demo", "--model", model, "--data", data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, columns, *rows = result.stdout.splitlines()
    assert header == "fhec demo: tiny.onnx, 12 test samples"
    assert columns.split()[:3] == ["backend", "samples", "max"]
    assert [row.split()[0] for row in rows] == list(BACKENDS)
    reference = rows[0].split()
    assert reference[1] == "12"  # samples
    assert float(reference[2]) < 1e-5  # max |diff| vs onnxruntime
    assert reference[3] == "0.750"  # accuracy


def test_run_demo_limit_takes_the_first_samples(tmp_path: Path) -> None:
    model, data = _demo_files(tmp_path)
    result = run_demo(model, data, limit=3)
    assert result.samples == 3
    assert result.rows[0].accuracy == 0.0  # the three relabelled samples


def test_demo_data_without_labels_is_an_error(tmp_path: Path) -> None:
    model = onnx_builders.mlp(tmp_path / "tiny.onnx")
    np.savez(tmp_path / "nolabel.npz", x=np.ones((2, 4), np.float32))
    result = run_fhec("demo", "--model", model, "--data", "nolabel.npz", cwd=tmp_path)
    assert_user_error(result, "demo data 'nolabel.npz' has no 'label' array", "class index")


def test_accuracy_needs_one_label_per_prediction() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    assert accuracy(scores, np.array([1, 0])) == 1.0
    assert accuracy(np.array([1, 1]), np.array([1, 0])) == 0.5  # class indices as given
    with pytest.raises(InputError, match="3 labels for 2 predictions"):
        accuracy(scores, np.array([1, 0, 1]))


@pytest.mark.skipif(
    not (BUNDLED / DEMO_MODEL).is_file() or not (BUNDLED / DEMO_DATA).is_file(),
    reason="the bundled demo files are made by examples/build_models.py",
)
def test_bundled_demo_agrees_with_onnxruntime() -> None:
    result = run_demo(backends=["reference"], limit=50)
    row = result.rows[0]
    assert row.max_abs_diff < 1e-4
    assert row.accuracy > 0.8
