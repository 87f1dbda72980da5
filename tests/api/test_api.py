"""fhec.compile / run / save / load / report / summary, and fhec.api.lower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_builders
import pytest

import fhec
from fhec.api import format_summary, lower, pass_index
from fhec.ir.interval import Interval
from fhec.passes import pipeline_for

RNG = np.random.default_rng(7)


def test_run_matches_onnxruntime_for_any_number_of_samples(
    models: Path, mlp: fhec.CompiledModel
) -> None:
    for samples in (1, 2, 9):
        x = RNG.standard_normal((samples, 4)).astype(np.float32)
        expected = onnx_builders.onnxruntime_run(models / "mlp.onnx", {"x": x})
        got = mlp.run({"x": x})
        assert list(got) == ["y"]
        np.testing.assert_allclose(got["y"], expected["y"], rtol=1e-4, atol=1e-5)


def test_compile_takes_a_model_proto_and_a_batch_size(models: Path) -> None:
    proto = onnx.load(str(models / "mlp.onnx"))
    model = fhec.compile(proto, batch_size=4)
    assert model.signature.inputs[0].shape == (4, 4)
    x = RNG.standard_normal((6, 4)).astype(np.float32)  # one full chunk, one padded
    expected = onnx_builders.onnxruntime_run(models / "mlp.onnx", {"x": x})["y"]
    np.testing.assert_allclose(model.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)


def test_an_input_without_batch_axis_goes_to_every_chunk(models: Path) -> None:
    model = fhec.compile(models / "mixed.onnx", batch_size=2)
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    bias = np.array([1, 2, 3, 4], np.float32)
    np.testing.assert_allclose(model.run({"x": x, "bias": bias})["y"], x + bias, rtol=1e-6)


def test_save_and_load_keep_module_report_and_outputs(
    tmp_path: Path, mlp: fhec.CompiledModel
) -> None:
    mlp.save(tmp_path / "m.fhec")
    loaded = fhec.load(tmp_path / "m.fhec")
    assert loaded.module == mlp.module
    assert loaded.signature == mlp.signature
    assert loaded.pipeline == mlp.pipeline == pipeline_for("reference")
    assert loaded.report == mlp.report
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], mlp.run({"x": x})["y"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.fhec"]  # no partial file left behind


def test_report_counts_ops_and_names_inputs_and_outputs(mlp: fhec.CompiledModel) -> None:
    report = mlp.report
    assert report["ops"] == {"func.input": 1, "linalg.gemm": 1, "nn.relu": 1, "tensor.constant": 2}
    assert report["node_count"] == len(mlp.module.graph) == 5
    assert report["inputs"] == [{"name": "x", "shape": [1, 4], "dtype": "float32", "batch_axis": 0}]
    assert report["outputs"] == [
        {"name": "y", "shape": [1, 3], "dtype": "float32", "batch_axis": 0}
    ]
    assert report["pipeline"] == list(pipeline_for("reference"))
    assert report["calibration_samples"] == 0


def test_calibrated_ranges_are_the_hull_of_the_samples(models: Path) -> None:
    x = RNG.uniform(-3, 2, (10, 4)).astype(np.float32)
    model = fhec.compile(models / "mlp.onnx", calibration=[{"x": x[:6]}, {"x": x[6:]}])
    assert model.report["calibration_samples"] == 10
    ranges = model.report["ranges"]
    assert isinstance(ranges, dict)
    assert ranges["x"] == [float(x.min()), float(x.max())]
    y = onnx_builders.onnxruntime_run(models / "mlp.onnx", {"x": x})["y"]
    np.testing.assert_allclose(ranges["y"], [y.min(), y.max()], rtol=1e-5, atol=1e-6)
    largest = model.report["largest_magnitude"]
    assert isinstance(largest, dict)
    intervals = [model.module.graph.node(v).annotation(Interval) for v in model.module.graph]
    assert largest["value"] >= max(abs(float(y.min())), abs(float(y.max())))
    assert any(i is not None and i.magnitude == largest["value"] for i in intervals)


def test_summary_shows_the_report(models: Path) -> None:
    x = np.array([[-1, 0, 1, 2]], np.float32)
    text = fhec.compile(models / "mlp.onnx", calibration={"x": x}).summary()
    lines = text.splitlines()
    assert lines[0] == "backend:  reference"
    assert "  x: float32[N, 4]" in lines
    assert "batch:    N is any number of samples, run 1 at a time" in lines
    assert "value ranges (calibrated on 1 samples):" in lines
    assert "  x  [-1, 2]" in lines


def test_summary_lists_keys_a_backend_added() -> None:
    text = format_summary({"backend": "ckks", "poly_modulus_degree": 8192})
    assert text.splitlines() == ["backend:  ckks", "poly_modulus_degree: 8192"]


def test_lower_stops_after_the_named_pass(models: Path) -> None:
    module = lower(models / "mlp.onnx", after="eliminate-dead-code")
    nodes = [module.graph.node(v) for v in module.graph]
    assert not any(node.type.secret for node in nodes)  # annotate-secrecy comes next
    full = lower(models / "mlp.onnx")
    assert any(node.type.secret for node in (full.graph.node(v) for v in full.graph))


def test_pass_index_counts_repeated_passes() -> None:
    pipeline = ("a", "b", "a", "c")
    assert pass_index(pipeline, "a", "x") == 0
    assert pass_index(pipeline, "a#2", "x") == 2
    assert pass_index(pipeline, "c", "x") == 3
    for bad in ("a#3", "a#0", "a#x", "d"):
        with pytest.raises(fhec.FhecError, match="its passes, in order: a, b, a, c"):
            pass_index(pipeline, bad, "x")


def test_integer_inputs_run_exactly(models: Path) -> None:
    model = fhec.compile(models / "ints.onnx")
    ids = np.array([[1, 2, 3], [10, 20, 30]], np.int32)  # cast up to the model's int64
    got = model.run({"ids": ids})["y"]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ids + np.array([1, 2, 3]))
