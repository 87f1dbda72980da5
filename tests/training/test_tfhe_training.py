"""TFHE training (backends/tfhe/training.py): the fixed-point step against the float step,
concrete's simulation and a real encrypted run against the clear quantized step, the
accuracy of a simulated run against the reference trainer, and every user-facing error."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from train_logreg_breast_cancer import accuracy, breast_cancer, logistic_regression

import fhec
from fhec.backends.tfhe.training import TrainingOptions, build_session
from fhec.backends.tfhe.training_fixed import StepProgram, fit_quantizer, width
from fhec.backends.tfhe.training_lower import lower_step
from fhec.ir.errors import CompileError, FhecError
from fhec.ir.interpreter import evaluate
from fhec.ir.parser import parse_module
from fhec.runtime.training import StepPlan, step_samples
from fhec.training import TrainingModel

WEIGHTS = ["fc.weight", "fc.bias"]
FEATURES, BATCH = 4, 4


@pytest.fixture(autouse=True)
def _quiet_concrete() -> None:
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    warnings.filterwarnings("ignore", message=".*declare_namespace.*")


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return breast_cancer()


def linear_regression(features: int = FEATURES) -> onnx.ModelProto:
    """x (N, features) -> Gemm 'fc' (zero weights) -> y (N, 1)."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc")], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(np.zeros((features, 1), np.float32), "fc.weight"),
         numpy_helper.from_array(np.zeros(1, np.float32), "fc.bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def softmax_regression(features: int = FEATURES, classes: int = 3) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["z"], name="fc"),
         helper.make_node("Softmax", ["z"], ["p"], name="softmax")], "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(np.zeros((features, classes), np.float32), "fc.weight"),
         numpy_helper.from_array(np.zeros(classes, np.float32), "fc.bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def frozen_mlp(features: int = 30, hidden: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x -> Gemm 'fc1' (frozen, seeded) -> Relu -> Gemm 'fc2' (zero, trained) -> Sigmoid."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["z"], name="fc2"),
             helper.make_node("Sigmoid", ["z"], ["p"], name="sigmoid")]
    weights = {"fc1.weight": rng.standard_normal((features, hidden)) * 0.3,
               "fc1.bias": rng.standard_normal(hidden) * 0.1,
               "fc2.weight": np.zeros((hidden, 1)), "fc2.bias": np.zeros(1)}
    graph = helper.make_graph(
        nodes, "frozen_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def regression_data(samples: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, FEATURES)).astype(np.float32)
    y = x @ np.array([[0.8], [-0.5], [0.3], [0.0]]) + 0.2 + 0.05 * rng.standard_normal((samples, 1))
    return {"x": x, "label": y.astype(np.float32)}


def tfhe(model: onnx.ModelProto, data: Mapping[str, np.ndarray], *, loss: str = "bce",
         lr: float = 0.5, batch: int = BATCH, epochs: int = 1, report_loss: bool = False,
         **options: object) -> TrainingModel:
    return fhec.compile_training(model, loss=loss, lr=lr, batch_size=batch, backend="tfhe",
                                 calibration=data, calibration_epochs=epochs,
                                 report_loss=report_loss,
                                 options={"tfhe-training": {"mode": "simulate", **options}})


def small_cancer(cancer: tuple[np.ndarray, ...], samples: int = 32) -> dict[str, np.ndarray]:
    x_train, _, y_train, _ = cancer
    return {"x": x_train[:samples, :FEATURES], "label": y_train[:samples]}


def lowered_logreg(data: Mapping[str, np.ndarray], bits: int = 4, lookup_bits: int = 6,
                   epochs: int = 1) -> tuple[TrainingModel, list[dict[str, np.ndarray]],
                                             StepProgram]:
    clear = fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=0.5,
                                  batch_size=BATCH)
    samples = step_samples(clear.trainer, data, epochs)
    program = lower_step(clear.module, samples, WEIGHTS, [*WEIGHTS, "loss"], bits, lookup_bits)
    return clear, samples, program


def clear_trajectory(model: TrainingModel, data: Mapping[str, np.ndarray], count: int
                     ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """The first `count` batches of `data`, and the model's clear quantized step run on
    them batch after batch from zero weights, the new weights fed back."""
    program: StepProgram = model.trainer.session.lowered  # type: ignore[attr-defined]
    steps = batches(data, count)
    weights = {n: np.zeros((FEATURES, 1) if n == "fc.weight" else (1,)) for n in WEIGHTS}
    found = []
    for batch in steps:
        decoded = program.decode(program.run_clear(program.encode({**batch, **weights})))
        weights = {name: decoded[name] for name in WEIGHTS}
        found.append(decoded)
    return steps, found


def batches(data: Mapping[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    labels = np.asarray(data["label"], np.float32).reshape(len(data["label"]), -1)
    return [{"x": data["x"][k * BATCH:(k + 1) * BATCH], "label": labels[k * BATCH:(k + 1) * BATCH]}
            for k in range(count)]


# -- the fixed-point step, in clear ------------------------------------------------------


def test_quantizers_and_widths() -> None:
    signed = fit_quantizer(2.0, 4, signed=True)
    assert (signed.low, signed.high) == (-7, 7)
    assert signed.encode(np.array([-3.0, 1.0, 2.0])).tolist() == [-7, 4, 7]  # clipped
    assert fit_quantizer(1.0, 4, signed=False).encode(np.array([0.0, 1.0])).tolist() == [0, 15]
    assert [width(0, 15), width(-8, 7), width(-9, 7), width(-132, 82)] == [4, 4, 5, 9]


def test_fixed_point_step_follows_the_float_step(cancer: tuple[np.ndarray, ...]) -> None:
    """Every calibration step, decoded, is the float step up to 4-bit quantization: the
    loss within 0.1, each weight within 3 of its quantization steps."""
    clear, samples, program = lowered_logreg(small_cancer(cancer))
    for sample in samples:
        decoded = program.decode(program.run_clear(program.encode(sample)))
        expected = evaluate(clear.module, sample)
        assert abs(float(decoded["loss"]) - float(expected["loss"])) < 0.1
        for name in WEIGHTS:
            step = program.quantizers[name].scale
            assert np.abs(decoded[name] - expected[name]).max() <= 3 * step


def test_weights_after_three_steps_within_the_predicted_bound(
        cancer: tuple[np.ndarray, ...]) -> None:
    """The predicted bound (report's weight_error_bound): per step, the calibrated error of
    one quantized step, summed over the steps."""
    data = small_cancer(cancer)
    model = tfhe(logistic_regression(FEATURES), data)
    reference = fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=0.5,
                                      batch_size=BATCH)
    for batch in batches(data, 3):
        model.step({"x": batch["x"]}, batch["label"])
        reference.step({"x": batch["x"]}, batch["label"])
    bound = model.report()["weight_error_bound"]
    assert isinstance(bound, dict)
    for name in WEIGHTS:
        error = np.abs(model.weights()[name] - reference.weights()[name]).max()
        assert error <= 3 * bound[name], (name, error, bound[name])


# -- concrete: simulation and a real encrypted run -----------------------------------------


def test_simulated_steps_are_the_clear_quantized_steps(cancer: tuple[np.ndarray, ...]) -> None:
    """Concrete's simulation, weights kept in the runtime between steps, gives the clear
    quantized step's integers exactly (lookups are exact; p_error aside)."""
    data = small_cancer(cancer)
    model = tfhe(logistic_regression(FEATURES), data, report_loss=True)
    steps, expected = clear_trajectory(model, data, 3)
    for batch, clear in zip(steps, expected, strict=True):
        loss = model.step({"x": batch["x"]}, batch["label"])
        assert loss == pytest.approx(float(clear["loss"]))
        for name in WEIGHTS:
            np.testing.assert_allclose(model.weights()[name], clear[name], rtol=1e-6)
    report = model.report()
    assert report["steps"] == 3 and report["mode"] == "simulate"
    assert isinstance(report["max_lookup_bits"], int) and 0 < report["max_lookup_bits"] <= 6
    assert isinstance(report["programmable_bootstraps_per_step"], int)


def test_encrypted_steps_match_the_clear_quantized_steps(cancer: tuple[np.ndarray, ...]) -> None:
    """A real run: keys, encryption, two encrypted steps with the weights kept encrypted
    on the server between them, decryption; the clear quantized step's numbers."""
    data = small_cancer(cancer)
    model = fhec.compile_training(
        logistic_regression(FEATURES), loss="bce", lr=0.5, batch_size=BATCH, backend="tfhe",
        calibration=data, report_loss=True,
        options={"tfhe-training": {"mode": "execute", "bits": 3, "lookup_bits": 5}})
    steps, expected = clear_trajectory(model, data, 2)
    for batch, clear in zip(steps, expected, strict=True):
        loss = model.step({"x": batch["x"]}, batch["label"])
        assert loss == pytest.approx(float(clear["loss"]))
    for name in WEIGHTS:
        np.testing.assert_allclose(model.weights()[name], expected[-1][name], rtol=1e-6)
    report = model.report()
    assert report["mode"] == "execute" and isinstance(report["keygen_seconds"], float)


# -- accuracy of simulated training -----------------------------------------------------------


def test_simulated_logistic_regression_reaches_the_clear_accuracy(
        cancer: tuple[np.ndarray, ...]) -> None:
    """Breast cancer, 30 features, from zero, 3 epochs of batches of 32: the test accuracy
    of the simulated encrypted run is within 2 points of the clear reference trainer's."""
    x_train, x_test, y_train, y_test = cancer
    data = {"x": x_train, "label": y_train}
    model = tfhe(logistic_regression(), data, lr=0.1, batch=32, epochs=3)
    reference = fhec.compile_training(logistic_regression(), loss="bce", lr=0.1, batch_size=32)
    model.fit(data, epochs=3, seed=0)
    reference.fit(data, epochs=3, seed=0)
    encrypted, clear = model.weights(), reference.weights()
    ours = accuracy(encrypted["fc.weight"], encrypted["fc.bias"], x_test, y_test)
    theirs = accuracy(clear["fc.weight"], clear["fc.bias"], x_test, y_test)
    assert theirs > 0.9
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_simulated_last_layer_of_a_frozen_mlp(cancer: tuple[np.ndarray, ...],
                                               tmp_path: Path) -> None:
    """Fine-tuning: the frozen layer's clear weights multiply the encrypted features, the
    last layer trains encrypted; the tuned ONNX model (onnxruntime) within 2 points of the
    clear trainer's."""
    x_train, x_test, y_train, y_test = cancer
    data = {"x": x_train, "label": y_train}
    model = tfhe(frozen_mlp(), data, lr=0.1, batch=32, epochs=2)
    reference = fhec.compile_training(frozen_mlp(), loss="bce", lr=0.1, batch_size=32)
    model.fit(data, epochs=2, seed=0)
    reference.fit(data, epochs=2, seed=0)
    found = []
    for name, trained in (("tfhe", model), ("clear", reference)):
        path = trained.export(tmp_path / f"{name}.onnx")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probability = session.run(None, {"x": x_test})[0].ravel()
        found.append(float(((probability > 0.5) == y_test).mean()))
    assert found[1] > 0.85
    assert abs(found[0] - found[1]) <= 0.02, found


def test_simulated_linear_regression_with_mse() -> None:
    """mse: the loss is reported (decrypted) each step and falls; the weights approach
    the clear trainer's."""
    data = regression_data()
    model = tfhe(linear_regression(), data, loss="mse", lr=0.2, epochs=3, report_loss=True,
                 bits=5, lookup_bits=7)
    reference = fhec.compile_training(linear_regression(), loss="mse", lr=0.2,
                                      batch_size=BATCH)
    history = model.fit(data, epochs=3, seed=0)
    reference.fit(data, epochs=3, seed=0)
    assert len(history.losses) == history.steps == 48
    assert np.mean(history.losses[-8:]) < 0.25 * np.mean(history.losses[:4])
    error = np.abs(model.weights()["fc.weight"] - reference.weights()["fc.weight"]).max()
    assert error < 0.15


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"tfhe-training": {"mode": "fast"}}, "unknown TFHE training mode 'fast'"),
    ({"tfhe-training": {"bits": 1}}, "bits=1 must be an integer in 2..15"),
    ({"tfhe-training": {"bits": 4.5}}, "bits=4.5 must be an integer"),
    ({"tfhe-training": {"bits": 5, "lookup_bits": 5}}, "lookup_bits=5 must be an integer in 6..16"),
    ({"quantize-tfhe": {"bits": 4}}, "no option group 'quantize-tfhe'"),
    ({"tfhe-training": {"colour": "red"}}, "has no option 'colour'"),
    ({"tfhe-training": "simulate"}, "options must be a dict, got 'simulate'"),
])
def test_bad_options(options: Mapping[str, Mapping[str, object]], message: str) -> None:
    with pytest.raises(FhecError, match=message):
        TrainingOptions.parse(options)


def test_momentum_is_refused(cancer: tuple[np.ndarray, ...]) -> None:
    with pytest.raises(FhecError, match="TFHE training does not support momentum"):
        fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=0.5, momentum=0.9,
                              batch_size=BATCH, backend="tfhe", calibration=small_cancer(cancer))


def test_cross_entropy_names_what_is_unsupported() -> None:
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((8, FEATURES)).astype(np.float32),
            "label": rng.integers(0, 3, 8)}
    with pytest.raises(CompileError, match=r"cannot lower nn\.log_softmax") as caught:
        tfhe(softmax_regression(), data, loss="cross-entropy", report_loss=True)
    assert "CrossEntropyLoss" in str(caught.value)


def test_empty_calibration_is_refused(cancer: tuple[np.ndarray, ...]) -> None:
    clear = fhec.compile_training(logistic_regression(FEATURES), loss="bce", lr=0.5,
                                  batch_size=BATCH)
    plan = StepPlan(clear.module, clear.weights(), {}, [], BATCH, False, {})
    with pytest.raises(FhecError, match="needs calibration data"):
        build_session(plan)


def test_concrete_failure_is_an_fhec_error(cancer: tuple[np.ndarray, ...]) -> None:
    """15-bit values: concrete finds no parameters for the products' sums."""
    with pytest.raises(FhecError, match="concrete cannot compile the training step"):
        tfhe(logistic_regression(FEATURES), small_cancer(cancer), bits=15, lookup_bits=16)


MATRIX = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
SECRET = "tensor<2x2xf32, secret>"


def dense(array: np.ndarray | np.float32) -> str:
    """The IR's dense literal: shape, dtype, the float32 bytes in hex."""
    data = np.asarray(array, np.float32)
    dims = "".join(f"{d}x" for d in data.shape)
    return f'{dims}f32, "0x{data.tobytes().hex().upper()}"'



STEP_WITH = "\n".join([
    "module {{", "  func @main {{",
    f'    %0 = func.input() {{{{input_name = "x", type = {SECRET}}}}} : {SECRET} loc("x", "Input")',
    f'    %1 = func.input() {{{{input_name = "w", type = {SECRET}}}}} : {SECRET} '
    'loc("w", "Initializer")',
    "    %2 = tensor.constant() {{value = dense<{constant}>}} : {constant_type} "
    'loc("c", "Constant")',
    f'    %3 = {{op}}(%1, %2) : {SECRET} loc("odd", "{{onnx}}")',
    f'    %4 = arith.add(%3, %0) : {SECRET} loc("w", "SGD")',
    '    return %4 as "w"', "  }}", "}}", "",
])


@pytest.mark.parametrize(("op", "onnx_op", "message"), [
    ("arith.mul", "Mul", "constant tensors of one element only"),
    ("arith.add", "Add", "constant tensors only as scalar factors"),
])
def test_constant_tensors_are_refused(op: str, onnx_op: str, message: str) -> None:
    module = parse_module(STEP_WITH.format(op=op, onnx=onnx_op, constant=dense(MATRIX),
                                           constant_type="tensor<2x2xf32>"))
    sample = {"x": np.ones((2, 2), np.float32), "w": np.ones((2, 2), np.float32)}
    with pytest.raises(CompileError, match=message) as caught:
        lower_step(module, [sample], ["w"], ["w"], 4, 6)
    assert "odd" in str(caught.value)


def test_multiplying_by_zero_is_refused() -> None:
    text = STEP_WITH.format(op="arith.mul", onnx="Mul", constant=dense(np.float32(0.0)),
                            constant_type="tensor<f32>")
    sample = {"x": np.ones((2, 2), np.float32), "w": np.ones((2, 2), np.float32)}
    with pytest.raises(CompileError, match="cannot multiply by the constant 0"):
        lower_step(parse_module(text), [sample], ["w"], ["w"], 4, 6)


def test_fhec_train_on_tfhe_in_simulation(cancer: tuple[np.ndarray, ...], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from fhec.cli import main

    x_train, _, y_train, _ = cancer
    onnx.save(logistic_regression(FEATURES), str(tmp_path / "model.onnx"))
    np.savez(tmp_path / "train.npz", x=x_train[:16, :FEATURES], label=y_train[:16])
    np.savez(tmp_path / "public.npz", x=x_train[100:, :FEATURES], label=y_train[100:])
    code = main(["train", str(tmp_path / "model.onnx"), "--data", str(tmp_path / "train.npz"),
                 "--calibration", str(tmp_path / "public.npz"), "--backend", "tfhe",
                 "--loss", "bce", "--lr", "0.5", "--batch-size", "8", "--show-loss",
                 "--option", "tfhe-training.mode=simulate", "-o", str(tmp_path / "tuned.onnx")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("loss ") == 2 and "encrypted training: mode simulate, bits 4" in out
    tuned = {t.name: numpy_helper.to_array(t)
             for t in onnx.load(str(tmp_path / "tuned.onnx")).graph.initializer}
    assert np.any(tuned["fc.weight"] != 0)
