"""Training on CKKS with real SEAL: encrypted batches and weights, client refreshes.

The step runs encrypted (128-bit parameters) and is checked against the same steps on
the reference backend (float32, exact sigmoid): losses close, weights within the
predicted bound after every step. The full breast-cancer run is a slow test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_logreg_breast_cancer import breast_cancer, logistic_regression

import fhec
from fhec.ir.errors import CompileError, FhecError
from fhec.training import TrainingModel

FEATURES, BATCH, STEPS, LR = 4, 8, 3, 0.5


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, x_test, y_train, y_test = breast_cancer()
    return x_train[:, :FEATURES], x_test[:, :FEATURES], y_train, y_test


def _trainer(data: tuple[np.ndarray, ...], backend: str, **kwargs: object) -> TrainingModel:
    x_train, _, y_train, _ = data
    calibration = {"x": x_train, "label": y_train.astype(np.float32)}
    return fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=LR,
                                 batch_size=BATCH, backend=backend, calibration=calibration,
                                 **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def steps(data: tuple[np.ndarray, ...]) -> dict[str, object]:
    """Three steps on CKKS and on the reference backend, on the same batches."""
    encrypted = _trainer(data, "ckks", report_loss=True)
    clear = _trainer(data, "reference")
    x_train, _, y_train, _ = data
    record: dict[str, list[object]] = {"losses": [], "clear_losses": [], "weights": [],
                                       "clear_weights": []}
    for step in range(STEPS):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        record["losses"].append(encrypted.step({"x": x_train[batch]}, y_train[batch]))
        record["clear_losses"].append(clear.step({"x": x_train[batch]}, y_train[batch]))
        record["weights"].append(encrypted.weights())
        record["clear_weights"].append(clear.weights())
    bounds = encrypted.trainer.session.weight_bounds(STEPS)  # type: ignore[attr-defined]
    return {**record, "bounds": bounds, "report": encrypted.report(), "trainer": encrypted}


def test_the_encrypted_loss_is_the_clear_one(steps: dict[str, list[float]]) -> None:
    losses, clear = np.array(steps["losses"]), np.array(steps["clear_losses"])
    assert losses[0] == pytest.approx(np.log(2.0), abs=1e-3)  # zero weights: log 2
    assert np.max(np.abs(losses - clear)) < 0.02  # the sigmoid's and softplus's fits


def test_weights_stay_within_the_predicted_bound(steps: dict[str, list[dict]]) -> None:
    for found, clear, bound in zip(steps["weights"], steps["clear_weights"], steps["bounds"],
                                   strict=True):
        for name in ("fc.weight", "fc.bias"):
            error = float(np.max(np.abs(found[name] - clear[name])))
            assert error <= bound[name], (name, error, bound[name])
            assert found[name].shape == clear[name].shape
    first = steps["weights"][0]["fc.weight"] - steps["clear_weights"][0]["fc.weight"]
    assert np.max(np.abs(first)) < 1e-3  # one step: CKKS noise and the fit, no drift yet


def test_training_moved_the_weights(steps: dict[str, list[dict]]) -> None:
    last = steps["weights"][-1]["fc.weight"]
    assert np.max(np.abs(last)) > 0.05  # from zero


def test_the_report_counts_refreshes_and_traffic(steps: dict[str, object]) -> None:
    report = steps["report"]
    assert isinstance(report, dict)
    assert report["steps"] == report["refreshes"] == STEPS
    assert report["security_bits"] == 128
    slots = int(report["poly_degree"]) // 2
    assert report["galois_keys"] == slots.bit_length() - 1  # rotations 1, 2, ..., slots/2
    traffic = report["traffic_bytes"]
    assert isinstance(traffic, dict)
    # Each refresh moves the 5 weights twice, each a ciphertext of >= 2 polynomials.
    assert report["refresh_bytes_per_refresh"] > 2 * 5 * 2 * int(report["poly_degree"])
    assert traffic["loss"] > 0 and traffic["batches"] > 0
    assert 1 <= int(report["levels_per_refresh"]) < len(report["coeff_modulus_bits"]) - 1
    assert report["levels_per_step"] == report["levels_per_refresh"]  # one step per refresh


def test_the_server_holds_no_secret_key(steps: dict[str, object]) -> None:
    import seal

    trainer = steps["trainer"]
    server = trainer.trainer.session.server  # type: ignore[attr-defined]
    held = [getattr(server, name) for name in dir(server) if not name.startswith("__")]
    held += [getattr(server.keys, name) for name in ("public_key", "relin_keys", "galois_keys")]
    assert not any(isinstance(item, seal.SecretKey) for item in held)
    assert server.keys.galois_keys is not None


def test_the_step_ir_shows_replicated_weights_and_rotations(
    steps: dict[str, object],
) -> None:
    ir = steps["trainer"].ir  # type: ignore[attr-defined]
    assert "#replicated{all_slots = true}" in ir
    assert "ckks.slot_sum" in ir and "#ckks_rotations{steps = [1, 2, 4," in ir
    assert "ckks.encode_samples" in ir  # the bias gradient sums a masked error
    assert "tensor<1x4x1xf32, secret>" in ir  # fc.weight, replicated


def test_without_report_loss_no_loss_is_computed(data: tuple[np.ndarray, ...]) -> None:
    trainer = _trainer(data, "ckks")
    assert [name for name, _ in trainer.module.function.outputs] == ["fc.weight", "fc.bias"]
    assert "softplus" not in trainer.ir  # the loss's softplus is not approximated


def test_a_conv_weight_cannot_be_trained_encrypted(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Flatten", ["c"], ["y"], name="flat")]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.ones((1, 1, 3), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = {"x": np.random.default_rng(0).standard_normal((8, 1, 4)).astype(np.float32),
            "label": np.zeros((8, 2), np.float32)}
    with pytest.raises(CompileError, match=r"linalg\.conv on encrypted trained weights"):
        fhec.compile_training(model, loss="mse", lr=0.1, batch_size=4, trainable=["w"],
                              backend="ckks", calibration=data)


def test_ckks_training_needs_calibration(data: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(FhecError, match="training on ckks needs calibration data"):
        fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=LR,
                              batch_size=BATCH, backend="ckks")


@pytest.mark.slow
def test_encrypted_training_reaches_the_clear_accuracy() -> None:
    """Logistic regression from zero on all 30 features: one epoch in batches of 32
    encrypted, against the same epoch in clear (float32, exact sigmoid)."""
    x_train, x_test, y_train, y_test = breast_cancer()
    model = logistic_regression(x_train.shape[1])
    calibration = {"x": x_train, "label": y_train.astype(np.float32)}
    accuracies = []
    for backend in ("reference", "ckks"):
        trainer = fhec.compile_training(model, loss="bce", lr=0.5, batch_size=32,
                                        backend=backend, calibration=calibration)
        trainer.fit({"x": x_train, "label": y_train}, epochs=1, seed=0)
        weights = trainer.weights()
        logits = x_test @ weights["fc.weight"] + weights["fc.bias"]
        accuracies.append(float(np.mean((logits[:, 0] > 0) == y_test)))
    clear, encrypted = accuracies
    assert clear > 0.9
    assert abs(encrypted - clear) <= 0.02


def test_fhec_train_on_ckks_writes_the_tuned_model(
    data: tuple[np.ndarray, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import onnx
    from onnx import numpy_helper

    from fhec.cli import main

    x_train, _, y_train, _ = data
    onnx.save(logistic_regression(FEATURES), str(tmp_path / "model.onnx"))
    np.savez(tmp_path / "train.npz", x=x_train[:16], label=y_train[:16])
    np.savez(tmp_path / "public.npz", x=x_train[100:], label=y_train[100:])
    code = main(["train", str(tmp_path / "model.onnx"), "--data", str(tmp_path / "train.npz"),
                 "--calibration", str(tmp_path / "public.npz"), "--backend", "ckks",
                 "--loss", "bce", "--lr", "0.5", "--batch-size", "8", "--show-loss",
                 "--option", "approximate-activations.margin=0.1",
                 "-o", str(tmp_path / "tuned.onnx")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("loss ") == 2 and "step 1  loss 0.69" in out  # zero weights: log 2
    assert "encrypted training: refreshes 2," in out and "galois_keys 13" in out
    tuned = {t.name: numpy_helper.to_array(t)
             for t in onnx.load(str(tmp_path / "tuned.onnx")).graph.initializer}
    assert tuned["fc.weight"].shape == (FEATURES, 1) and np.any(tuned["fc.weight"] != 0)


def test_cross_entropy_is_refused_on_ckks(models: Path) -> None:
    data = {"x": np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32),
            "label": np.arange(16) % 3}
    with pytest.raises(FhecError, match="softmax cross-entropy cannot be trained on CKKS"):
        fhec.compile_training(models / "mlp3.onnx", loss="cross-entropy", lr=0.1,
                              batch_size=8, backend="ckks", calibration=data)


def test_a_head_after_a_frozen_relu_layer_trains_on_ckks(models: Path) -> None:
    """mlp3's head (5 -> 3) on mse, its frozen first layer and ReLU (a polynomial) run
    on the encrypted features: one step within the predicted bound of the clear one."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 64)]
    data = {"x": x, "label": labels}
    steps = {}
    for backend in ("reference", "ckks"):
        trainer = fhec.compile_training(models / "mlp3.onnx", loss="mse", lr=0.1,
                                        batch_size=8, backend=backend, calibration=data)
        trainer.step({"x": x[:8]}, labels[:8])
        steps[backend] = trainer
    clear, encrypted = steps["reference"].weights(), steps["ckks"].weights()
    bounds = steps["ckks"].trainer.session.weight_bounds(1)[0]  # type: ignore[attr-defined]
    for name in ("fc2.weight", "fc2.bias"):
        error = float(np.max(np.abs(encrypted[name] - clear[name])))
        assert error <= bounds[name], (name, error, bounds[name])
        assert encrypted[name].shape == clear[name].shape
    assert '#approx{function = "nn.relu"' in steps["ckks"].ir


def test_a_diverging_rate_is_caught_by_the_rehearsal(models: Path) -> None:
    """Before anything is encrypted: the rehearsal in clear on the calibration data."""
    rng = np.random.default_rng(2)
    data = {"x": (rng.standard_normal((64, 4)) * 10).astype(np.float32),
            "label": rng.standard_normal((64, 3)).astype(np.float32)}
    with pytest.raises(FhecError, match="training diverged at step"):
        fhec.compile_training(models / "mlp3.onnx", loss="mse", lr=50.0, batch_size=8,
                              backend="ckks", calibration=data)


def test_weights_leaving_the_calibrated_range_warn(data: tuple[np.ndarray, ...]) -> None:
    """Calibrated on one batch's first step only (zero weights), then trained: the
    client sees the weights leave their range at the first refresh."""
    from fhec.backends.ckks.circuit import CalibrationRangeWarning

    x_train, _, y_train, _ = data
    trainer = fhec.compile_training(
        logistic_regression(FEATURES), loss="bce", lr=LR, batch_size=BATCH, backend="ckks",
        calibration={"x": x_train[:BATCH], "label": y_train[:BATCH]})
    with pytest.warns(CalibrationRangeWarning, match="after step 1 the weights 'fc.weight'"):
        trainer.step({"x": x_train[:BATCH]}, y_train[:BATCH])


def test_steps_per_refresh_applies_to_ckks_only(data: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(FhecError, match="steps_per_refresh applies to the ckks backend"):
        _trainer(data, "reference", steps_per_refresh=2)
    with pytest.raises(FhecError, match=r"steps_per_refresh must be an integer in 1\.\.64"):
        _trainer(data, "ckks", steps_per_refresh=0)


@pytest.mark.slow
def test_two_steps_per_refresh(data: tuple[np.ndarray, ...]) -> None:
    """Parameters deep enough for two steps: one refresh per two steps, the same weights
    as two single steps within the bound; an odd number of steps is refused up front."""
    x_train, _, y_train, _ = data
    trainer = _trainer(data, "ckks", steps_per_refresh=2,
                       options={"approximate-activations": {"max_degree": 3}})
    clear = _trainer(data, "reference")
    with pytest.raises(FhecError, match="runs 2 steps at once"):
        trainer.fit({"x": x_train[: 3 * BATCH], "label": y_train[: 3 * BATCH]}, shuffle=False)
    for step in range(2):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        trainer.step({"x": x_train[batch]}, y_train[batch])
        clear.step({"x": x_train[batch]}, y_train[batch])
    report = trainer.report()
    assert report["refreshes"] == 1 and report["steps"] == 2
    assert report["levels_per_refresh"] > report["levels_per_step"]
    bounds = trainer.trainer.session.weight_bounds(1)[0]  # type: ignore[attr-defined]
    found, expected = trainer.weights(), clear.weights()
    for name in ("fc.weight", "fc.bias"):
        assert float(np.max(np.abs(found[name] - expected[name]))) <= bounds[name]


def test_the_server_refuses_foreign_or_misshapen_data(steps: dict[str, object]) -> None:
    from fhec.ir.errors import ArtifactError, InputError
    from fhec.runtime.ckks_training_client import TrainingClient

    session = steps["trainer"].trainer.session  # type: ignore[attr-defined]
    server, client = session.server, session.client
    stranger = TrainingClient(session.module)  # same parameters, another key set
    zeros = {"fc.weight": np.zeros((FEATURES, 1)), "fc.bias": np.zeros(1)}
    with pytest.raises(ArtifactError, match="belong to another key set"):
        server.receive_weights(stranger.encrypt_weights(zeros))
    with pytest.raises(InputError, match=r"expected encrypted \['fc.bias', 'fc.weight'\]"):
        server.receive_weights(client.encrypt_weights({"fc.weight": zeros["fc.weight"]}))
    wide = {"fc.weight": np.zeros((FEATURES + 1, 1)), "fc.bias": np.zeros(1)}
    with pytest.raises(InputError, match=r"encrypted 'fc\.weight' is"):
        server.receive_weights(client.encrypt_weights(wide))
    with pytest.raises(ArtifactError, match="corrupted"):
        data = bytearray(client.encrypt_weights(zeros))
        data[-10] ^= 0xFF
        server.receive_weights(bytes(data))


def test_the_training_server_never_imports_the_client() -> None:
    import subprocess
    import sys

    source = (Path(__file__).parents[2] / "runtime" / "ckks_training_server.py").read_text()
    assert "ckks_training_client" not in source and "SecretKey" not in source
    check = ("import sys, fhec.runtime.ckks_training_server; "
             "assert 'fhec.runtime.ckks_training_client' not in sys.modules, 'client imported'")
    subprocess.run([sys.executable, "-c", check], check=True)
