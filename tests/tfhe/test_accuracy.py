"""The quantized model's accuracy in clear: `CompiledModel.evaluate_accuracy` and the
report field `fhec compile` fills when the calibration file has labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tfhe_helpers import gemm_model, golden, samples

import fhec
from fhec.api import CompiledModel
from fhec.cli import main
from fhec.ir.errors import InputError

CASE = "logreg_breast_cancer"


@pytest.fixture(scope="module")
def logreg() -> CompiledModel:
    model, _, _, calibration = golden(CASE)
    return fhec.compile(model, backend="tfhe", calibration=calibration)


def test_clear_accuracy_is_the_integer_models(logreg: CompiledModel) -> None:
    _, inputs, labels, _ = golden(CASE)
    clear = CompiledModel("reference", logreg.module, logreg.signature, logreg.pipeline)
    by_hand = float(np.mean(clear.run(inputs)["output_label"] == labels))
    assert logreg.evaluate_accuracy(inputs, labels) == by_hand
    assert by_hand == pytest.approx(137 / 143)  # the float model's 0.9580
    # no lookup in this model: simulation computes the same integers
    assert logreg.evaluate_accuracy(inputs, labels, mode="simulate") == by_hand
    # a wrong label per sample on the first ten samples: ten fewer right
    wrong = labels.copy()
    wrong[:10] = 1 - wrong[:10]
    right_before = np.sum(clear.run(inputs)["output_label"][:10] == labels[:10])
    expected = by_hand - (2 * right_before - 10) / len(labels)
    assert logreg.evaluate_accuracy(inputs, wrong) == pytest.approx(expected)


def test_accuracy_of_a_score_output_is_its_argmax() -> None:
    model = gemm_model((8, 6, 3))
    calibration = {"x": samples(50)}
    compiled = fhec.compile(model, backend="reference", calibration=calibration)
    scores = compiled.run(calibration)["y"]
    labels = scores.argmax(1)
    labels[:5] = (labels[:5] + 1) % 3
    assert compiled.evaluate_accuracy(calibration, labels) == pytest.approx(45 / 50)


def test_accuracy_refuses_what_it_cannot_score(logreg: CompiledModel) -> None:
    _, inputs, labels, _ = golden(CASE)
    with pytest.raises(InputError, match="unknown accuracy mode 'fast'"):
        logreg.evaluate_accuracy(inputs, labels, mode="fast")
    with pytest.raises(InputError, match="142 labels for 143 samples"):
        logreg.evaluate_accuracy(inputs, labels[:-1])
    two_outputs = fhec.compile(_two_score_model(), calibration={"x": samples(20)})
    with pytest.raises(InputError, match="cannot tell the predicted class"):
        two_outputs.evaluate_accuracy({"x": samples(4)}, np.zeros(4, dtype=np.int64))


def test_fhec_compile_reports_the_clear_accuracy_on_labelled_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], logreg: CompiledModel
) -> None:
    model, inputs, labels, _ = golden(CASE)
    data = tmp_path / "labelled.npz"
    np.savez(data, **inputs, label=labels)
    out = tmp_path / "model.fhec"
    code = main(["compile", str(model), "--backend", "tfhe", "--calibration", str(data),
                 "-o", str(out), "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    # calibrated on the held-out split here, so its accuracy is the held-out one
    assert report["calibration_accuracy_in_clear"] == round(137 / 143, 4)
    assert fhec.load(out).report["calibration_accuracy_in_clear"] == round(137 / 143, 4)
    # without labels, no such field
    np.savez(data, **inputs)
    assert main(["compile", str(model), "--backend", "tfhe", "--calibration", str(data),
                 "-o", str(out), "--json"]) == 0  # fmt: skip
    assert "calibration_accuracy_in_clear" not in json.loads(capsys.readouterr().out)


def test_a_model_that_is_no_classifier_says_why_it_has_no_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.onnx"
    onnx.save(_two_score_model(), path)
    data = tmp_path / "labelled.npz"
    np.savez(data, x=samples(20), label=np.zeros(20, dtype=np.int64))
    code = main(["compile", str(path), "--calibration", str(data), "-o",
                 str(tmp_path / "two.fhec"), "--json"])  # fmt: skip
    assert code == 0
    field = json.loads(capsys.readouterr().out)["calibration_accuracy_in_clear"]
    assert field.startswith("n/a (cannot tell the predicted class")


def _two_score_model() -> onnx.ModelProto:
    model = gemm_model((8, 3))
    model.graph.node.append(helper.make_node("Neg", ["y"], ["z"], name="neg"))
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3]))
    return model
