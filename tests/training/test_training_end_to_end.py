"""Clear (reference) training end to end: from zero, transfer learning, and the tuned
ONNX model the runtime writes back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import train_logreg_breast_cancer as logreg
import train_transfer_digits as transfer
from onnx import numpy_helper

import fhec


def test_logistic_regression_from_zero_matches_the_numpy_loop() -> None:
    results = logreg.run(epochs=20, lr=0.1, batch_size=32)
    assert results["fhec test accuracy"] >= 0.95
    assert abs(results["fhec test accuracy"] - results["numpy test accuracy"]) <= 0.02
    # Same batches, same order: the float32 weights follow the float64 loop closely.
    assert results["largest weight difference"] < 1e-4
    assert results["last loss"] < results["first loss"] / 5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's TorchScript export
def test_transfer_learning_head_learns_the_new_classes(tmp_path: Path) -> None:
    results = transfer.run(epochs=10, out=tmp_path / "tuned.onnx")
    assert results["pretrained accuracy on 0-4"] > 0.95
    assert results["pretrained accuracy on 0-9"] < 0.55  # it never saw 5-9
    assert results["fine-tuned accuracy on 0-9 (reference)"] > 0.85


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_export_replaces_only_the_trained_initializers(models: Path, tmp_path: Path) -> None:
    trainer = fhec.compile_training(models / "mlp3.onnx", loss="cross-entropy", lr=0.5,
                                    batch_size=4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    trainer.fit({"x": x, "label": rng.integers(0, 3, 12)}, epochs=2)
    tuned_path = trainer.export(tmp_path / "tuned.onnx")
    before, after = _initializers(models / "mlp3.onnx"), _initializers(tuned_path)
    assert trainer.parameters == ("fc2.weight", "fc2.bias")
    for name in ("fc1.weight", "fc1.bias"):
        np.testing.assert_array_equal(after[name], before[name])
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(after[name], value)
        assert not np.array_equal(after[name], before[name])
    # The tuned file is an ONNX model onnxruntime runs: same answer as the reference
    # backend on it.
    session = ort.InferenceSession(str(tuned_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(fhec.compile(tuned_path).run({"x": x})["logits"], expected,
                               rtol=1e-5, atol=1e-6)


def test_weights_are_copies_and_steps_are_counted(models: Path) -> None:
    trainer = fhec.compile_training(models / "binary.onnx", loss="bce", lr=0.1, batch_size=2)
    first = trainer.weights()
    first["fc.weight"][:] = 99.0
    assert not np.any(trainer.weights()["fc.weight"] == 99.0)
    x = np.ones((2, 4), np.float32)
    loss = trainer.step({"x": x}, np.array([1, 0]))
    assert trainer.steps_done == 1 and loss > 0


def test_step_ir_is_a_function_of_weights_batch_and_labels(models: Path) -> None:
    trainer = fhec.compile_training(models / "mlp3.onnx", trainable=["fc1.weight"],
                                    loss="mse", lr=0.1, momentum=0.9, batch_size=4)
    graph = trainer.module.graph
    inputs = {graph.node(v).op.input_name: graph.node(v).type  # type: ignore[attr-defined]
              for v in trainer.module.function.inputs}
    assert set(inputs) == {"x", "label", "fc1.weight", "fc1.weight.velocity"}
    assert {s.name: s.shape for s in trainer.signature.inputs} == {
        "x": (4, 4), "label": (4, 3), "fc1.weight": (4, 5), "fc1.weight.velocity": (4, 5)}
    assert [s.shape for s in trainer.signature.outputs] == [(4, 5), (4, 5), ()]
    assert all(t.secret for t in inputs.values())
    assert [name for name, _ in trainer.module.function.outputs] == [
        "fc1.weight", "fc1.weight.velocity", "loss"]
    assert any(p.startswith("differentiate{") and "lr=0.1" in p for p in trainer.pipeline)
    # Frozen weights stay constants: fc1.bias and fc2's weights are folded in, not inputs.
    assert 'loc("fc1.bias", "Initializer")' in trainer.ir


def test_fit_shows_a_progress_bar_only_when_asked(models: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    trainer = fhec.compile_training(models / "binary.onnx", loss="bce", lr=0.1, batch_size=2)
    data = {"x": np.ones((6, 4), np.float32), "label": np.array([1, 0, 1, 0, 1, 1])}
    seen: list[tuple[int, float]] = []
    history = trainer.fit(data, epochs=2, on_step=lambda step, loss: seen.append((step, loss)))
    assert capsys.readouterr().err == ""
    assert [step for step, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert history.losses == [loss for _, loss in seen] and history.left_out_per_epoch == 0
    trainer.fit(data, epochs=1, progress=True)
    assert "training" in capsys.readouterr().err


def test_calibration_data_sets_the_ranges_of_the_step(models: Path) -> None:
    from fhec.ir.interval import Interval

    rng = np.random.default_rng(3)
    data = {"x": rng.uniform(-3, 3, (8, 4)).astype(np.float32), "label": np.arange(8) % 3}
    trainer = fhec.compile_training(models / "mlp3.onnx", loss="cross-entropy", lr=0.1,
                                    batch_size=4, calibration=data)
    graph = trainer.module.graph
    x_range = graph.node(trainer.module.function.input_named("x")).annotation(Interval)
    assert x_range is not None
    assert (x_range.lo, x_range.hi) == (float(data["x"].min()), float(data["x"].max()))
    loss = dict(trainer.module.function.outputs)["loss"]
    assert graph.node(loss).annotation(Interval) is not None
    with pytest.raises(fhec.InputError, match="the calibration data holds 2 samples, fewer"):
        fhec.compile_training(models / "mlp3.onnx", loss="cross-entropy", lr=0.1, batch_size=4,
                              calibration={"x": data["x"][:2], "label": data["label"][:2]})


def test_gradient_nodes_carry_the_location_of_their_forward_node(models: Path) -> None:
    trainer = fhec.compile_training(
        models / "mlp3.onnx", trainable=["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
        loss="cross-entropy", lr=0.1, batch_size=4)
    from fhec.ir.ops.core import ConstantOp, InputOp

    graph = trainer.module.graph
    computed = [graph.node(v) for v in graph
                if not isinstance(graph.node(v).op, ConstantOp | InputOp)]
    forward = {("fc1", "Gemm"), ("relu", "Relu"), ("fc2", "Gemm")}
    allowed = forward | {("loss", "CrossEntropyLoss")} | {
        (name, "SGD") for name in trainer.parameters}
    assert {(n.location.name, n.location.op_type) for n in computed} <= allowed
    by_op = {n.op.name: (n.location.name, n.location.op_type) for n in computed}
    assert by_op["grad.step"] == ("relu", "Relu")  # relu' sits where relu does
    gemms = [n.location.name for n in computed if n.op.name == "linalg.gemm"]
    # each forward gemm; fc2's weight and input gradients; fc1's weight gradient only (the
    # features need none)
    assert sorted(gemms) == ["fc1", "fc1", "fc2", "fc2", "fc2"]
