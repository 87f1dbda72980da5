"""Every mistake a training user can make: one clear error that says what to do.

Through the Python API (fast, in-process); tests/training/test_cli_train.py checks that
the CLI turns the same errors into one `error:` line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fhec
from fhec.ir.errors import CompileError, FhecError, InputError
from fhec.ir.graph import Graph
from fhec.ir.location import Location
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import DivOp
from fhec.ir.parser import parse_module
from fhec.ir.types import DType, TensorType
from fhec.passes import PassContext, make_pass, run_pipeline
from fhec.passes.derivatives import Adjoint, Emitter, NoDerivative, differentiate_node
from fhec.runtime.training import (
    DivergenceMonitor,
    LabelSpec,
    encode_labels,
    epoch_batches,
    export_onnx,
    split_labels,
)

X = np.zeros((4, 4), np.float32)


def _compile(models: Path, name: str, **options: object) -> fhec.TrainingModel:
    settings: dict[str, object] = {"loss": "cross-entropy", "lr": 0.1, "batch_size": 4}
    settings.update(options)
    return fhec.compile_training(models / f"{name}.onnx", **settings)  # type: ignore[arg-type]


# -- what to train ----------------------------------------------------------------------


def test_unknown_trainable_name_lists_the_candidates(models: Path) -> None:
    with pytest.raises(FhecError, match=r"no trainable weight named 'fc3\.weight'") as raised:
        _compile(models, "mlp3", trainable=["fc3.weight"])
    assert "fc1.weight, fc1.bias, fc2.weight, fc2.bias (or 'last')" in str(raised.value)


def test_an_input_is_not_a_weight(models: Path) -> None:
    with pytest.raises(FhecError, match="'x' is an input of the model, not a weight"):
        _compile(models, "mlp3", trainable="x")


def test_last_needs_a_gemm(models: Path) -> None:
    with pytest.raises(CompileError, match="no Gemm whose weights are an initializer"):
        _compile(models, "no_gemm", loss="mse")


@pytest.mark.parametrize("trainable", [3, [], ["a", 4]])
def test_trainable_must_be_names(models: Path, trainable: object) -> None:
    with pytest.raises(FhecError, match="trainable must be 'last' or a list"):
        _compile(models, "mlp3", trainable=trainable)


def test_names_with_commas_cannot_be_trained(models: Path) -> None:
    with pytest.raises(FhecError, match="cannot train an initializer named 'a,b'"):
        _compile(models, "mlp3", trainable=["a,b"])


def test_a_weight_the_loss_does_not_use(models: Path) -> None:
    with pytest.raises(CompileError, match=r"parameter 'b\.weight' does not affect the loss"):
        _compile(models, "two_heads", trainable=["b.weight"], output="a")
    trainer = _compile(models, "two_heads", trainable=["b.weight"], output="b")
    assert trainer.parameters == ("b.weight",)


def test_a_node_without_derivative_is_named(models: Path) -> None:
    with pytest.raises(CompileError) as raised:
        _compile(models, "reduce_max_head", loss="mse")
    message = str(raised.value)
    assert message.startswith("node 'pick' (ReduceMax): cannot differentiate")
    assert "tensor.reduce_max has no derivative rule" in message
    assert "--trainable last" in message


def test_batch_norm_statistics_cannot_be_trained(tmp_path: Path) -> None:
    channel = np.ones(2, np.float32)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")
    graph = helper.make_graph(
        [node], "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])],
        [numpy_helper.from_array(channel * k, n) for k, n in enumerate("sbmv", 1)])
    path = tmp_path / "bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(CompileError, match="running mean and variance of a batch norm"):
        fhec.compile_training(path, trainable=["m"], loss="mse", lr=0.1, batch_size=2)
    trainer = fhec.compile_training(path, trainable=["s", "b"], loss="mse", lr=0.1, batch_size=2)
    assert trainer.parameters == ("s", "b")


def test_integer_casts_and_divisions_have_no_derivative() -> None:
    module = parse_module('''module { func @main {
      %0 = func.input() {input_name = "w", type = tensor<2xf32>} : tensor<2xf32>
           loc("w", "Initializer")
      %1 = tensor.cast(%0) {to = "i32"} : tensor<2xi32> loc("to_int", "Cast")
      %2 = tensor.cast(%1) {to = "f32"} : tensor<2xf32> loc("to_float", "Cast")
      return %2 as "y"
    } }''')
    step = make_pass("differentiate", {"parameters": "w", "loss": "mse"})
    with pytest.raises(CompileError, match=r"node 'to_float' .* a cast between i32 and f32"):
        run_pipeline(module, [step])
    graph = Graph()
    ints = TensorType((2,), DType.I32)
    a = graph.add(InputOp("a", ints), (), ints, Location("a", "Input"))
    b = graph.add(ConstantOp.of(np.array([2, 3], np.int32)), (), ints, Location("b", "Constant"))
    y = graph.add(DivOp(truncate=True), (a, b), ints, Location("div", "Div"))
    adjoint = Adjoint(Emitter(graph, Location("div", "Div")), DivOp(truncate=True), (a, b), y, y,
                      (True, False))
    with pytest.raises(NoDerivative, match="integer division has no derivative"):
        differentiate_node(adjoint)


# -- the pass's own options ---------------------------------------------------------------


@pytest.mark.parametrize(("option", "value", "message"), [
    ("lr", "-1", "learning rate must be positive"),
    ("lr", "inf", "learning rate must be positive"),
    ("momentum", "1.0", r"momentum must be in \[0, 1\)"),
])
def test_differentiate_checks_its_options(option: str, value: str, message: str) -> None:
    with pytest.raises(FhecError, match=message):
        make_pass("differentiate", {"parameters": "w", option: value})


def _small_module() -> str:
    return '''module { func @main {
      %0 = func.input() {input_name = "x", type = tensor<2x3xf32>} : tensor<2x3xf32>
           loc("x", "Input")
      %1 = func.input() {input_name = "n", type = tensor<2x3xi32>} : tensor<2x3xi32>
           loc("n", "Input")
      %2 = nn.relu(%0) : tensor<2x3xf32> loc("relu", "Relu")
      return %2 as "y", %1 as "count"
    } }'''


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"parameters": ""}, FhecError, "needs at least one parameter to train"),
    ({"parameters": "w"}, FhecError, "no input named 'w' to train; inputs are: n, x"),
    ({"parameters": "n"}, CompileError, "parameter 'n' is tensor<2x3xi32>, not floats"),
    ({"parameters": "x", "output": "z"}, FhecError, "no output named 'z'; outputs are: y, count"),
    ({"parameters": "x", "output": "count"}, CompileError, "the loss needs a float tensor"),
])
def test_differentiate_checks_parameters_and_output(options: dict[str, str],
                                                    error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        run_pipeline(parse_module(_small_module()), [make_pass("differentiate", options)])


def test_promote_parameters_needs_names_and_lists_none_when_there_are_none() -> None:
    module = parse_module(_small_module())
    with pytest.raises(FhecError, match="no parameters to train"):
        make_pass("promote-parameters", {"names": ""}).run(module, PassContext())
    with pytest.raises(FhecError, match=r"named 'w'; trainable weights: \(none"):
        make_pass("promote-parameters", {"names": "w"}).run(module, PassContext())


# -- the loss against the output ---------------------------------------------------------


def test_bce_on_a_several_class_output(models: Path) -> None:
    with pytest.raises(CompileError, match="bce needs one logit or probability per sample; "
                       "output 'logits' has 3 values per sample"):
        _compile(models, "mlp3", loss="bce")


def test_cross_entropy_on_one_column(models: Path) -> None:
    with pytest.raises(CompileError, match=r"cross-entropy needs an \(N, classes\) output"):
        _compile(models, "binary", loss="cross-entropy")


def test_an_integer_output_cannot_be_trained(models: Path) -> None:
    with pytest.raises(CompileError, match="output 'class' is tensor<4x1xi64"):
        _compile(models, "argmax_output", trainable=["fc.weight"])


def test_a_model_input_named_label_clashes(models: Path) -> None:
    with pytest.raises(CompileError, match="already has an input named 'label'"):
        _compile(models, "label_input", loss="mse")


def test_a_fixed_batch_axis_needs_that_batch_size(models: Path) -> None:
    with pytest.raises(InputError, match=r"fixed shape \(2, 4\), so batches of 4"):
        _compile(models, "fixed_batch", loss="mse")
    assert _compile(models, "fixed_batch", loss="mse", batch_size=2).batch_size == 2


# -- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"backend": "gpu"}, "unknown training backend 'gpu'"),
    ({"backend": "ckks"}, "training on ckks needs calibration data"),
    ({"backend": "tfhe"}, "training on tfhe needs calibration data"),
    ({"calibration_epochs": 0}, "calibration_epochs must be a positive integer"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"lr": "fast"}, "the learning rate must be a number"),
    ({"lr": 0.0}, "the learning rate must be positive and finite"),
    ({"momentum": None}, "momentum must be a number"),
    ({"momentum": -0.1}, r"momentum must be in \[0, 1\)"),
    ({"batch_size": 0}, "batch size must be at least 1"),
])
def test_bad_options(models: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(FhecError, match=message):
        _compile(models, "mlp3", **options)


def test_epochs_must_be_positive(models: Path) -> None:
    trainer = _compile(models, "mlp3")
    for epochs in (0, 1.5, True):
        with pytest.raises(FhecError, match="epochs must be a positive integer"):
            trainer.fit({"x": X, "label": np.zeros(4)}, epochs)  # type: ignore[arg-type]


# -- labels -------------------------------------------------------------------------------

CLASSES = LabelSpec("cross-entropy", (4, 3), np.dtype(np.float32))
TARGETS = LabelSpec("mse", (4, 2), np.dtype(np.float32))
BINARY = LabelSpec("bce", (4, 1), np.dtype(np.float32))


@pytest.mark.parametrize(("spec", "labels", "message"), [
    (CLASSES, [[0, 1], [2]], "the labels are not an array"),
    (CLASSES, np.array(["a", "b", "c", "d"]), "element type <U1, expected numbers"),
    (CLASSES, np.zeros(3), "the labels hold 3 samples, the features 4"),
    (CLASSES, np.float32(1.0), "the labels hold a scalar"),
    (CLASSES, np.zeros((4, 3)), r"class indices of shape \(4,\), found shape \(4, 3\)"),
    (CLASSES, np.array([0, 1, 2.5, 1]), "must be whole class indices"),
    (CLASSES, np.array([0, 1, 3, 1]), "must lie in 0..2 for this 3-class output, found 3"),
    (CLASSES, np.array([0, -1, 2, 1]), "must lie in 0..2 for this 3-class output, found -1"),
    (TARGETS, np.zeros((4, 3)), r"shape \(4, 3\), the mse loss on this output needs \(4, 2\)"),
    (TARGETS, np.full((4, 2), np.nan), "NaN or infinite"),
    (BINARY, np.array([0, 1, 2, 1]), r"bce labels must lie in \[0, 1\], found \[0, 2\]"),
])
def test_bad_labels(spec: LabelSpec, labels: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        encode_labels(spec, labels, 4)


def test_good_labels_are_encoded() -> None:
    one_hot = encode_labels(CLASSES, np.array([[2], [0], [1], [2]]), 4)
    np.testing.assert_array_equal(one_hot.argmax(axis=1), [2, 0, 1, 2])
    assert encode_labels(BINARY, np.array([1, 0, 0.5, 1]), 4).shape == (4, 1)


def test_training_data_needs_labels_and_enough_samples() -> None:
    with pytest.raises(InputError, match="has no 'label' array; store the targets"):
        split_labels({"x": X}, "the training data")
    with pytest.raises(InputError, match="must be a dict"):
        split_labels([X], "the training data")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="holds 3 samples, fewer than the batch size 4"):
        epoch_batches(3, 4, None)


def test_step_takes_exactly_one_batch(models: Path) -> None:
    trainer = _compile(models, "mlp3")
    with pytest.raises(InputError, match="a step takes a batch of 4 samples, got 5"):
        trainer.step({"x": np.zeros((5, 4), np.float32)}, np.zeros(5))


# -- divergence ---------------------------------------------------------------------------


def test_divergence_names_the_step_and_suggests_a_smaller_rate() -> None:
    monitor = DivergenceMonitor(lr=2.0)
    monitor.check(1, 0.5)
    monitor.check(2, 400.0)  # 800x: still training
    with pytest.raises(FhecError, match=r"diverged at step 3: the loss grew from 0.5 to 600; "
                       r"use a smaller learning rate, e\.g\. 0\.2 \(--lr\)"):
        monitor.check(3, 600.0)
    with pytest.raises(FhecError, match="diverged at step 4: the loss is nan"):
        monitor.check(4, float("nan"))


def test_a_diverging_fit_stops_with_the_last_good_weights(models: Path) -> None:
    trainer = _compile(models, "mlp3", loss="mse", trainable=["fc1.weight"], lr=50.0)
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((32, 4)).astype(np.float32),
            "label": rng.standard_normal((32, 3)).astype(np.float32)}
    with pytest.raises(FhecError, match=r"training diverged at step \d+: the loss"):
        trainer.fit(data, epochs=5)
    assert all(np.isfinite(w).all() for w in trainer.weights().values())


def test_weights_that_overflow_stop_training(models: Path) -> None:
    trainer = _compile(models, "binary", loss="bce", lr=1e38, batch_size=2)
    with pytest.raises(FhecError, match="diverged at step 1: the weights became non-finite"):
        trainer.step({"x": np.full((2, 4), 10.0, np.float32)}, np.array([0.5, 0.5]))


# -- export -------------------------------------------------------------------------------


def test_export_errors(models: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(models / "mlp3.onnx"))
    with pytest.raises(FhecError, match="no initializer named 'nope' to update"):
        export_onnx(proto, {"nope": np.zeros(1)}, tmp_path / "t.onnx")
    with pytest.raises(InputError, match="cannot write"):
        export_onnx(proto, {}, tmp_path / "missing" / "t.onnx")
