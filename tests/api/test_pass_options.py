"""Pass options from the API (`options=`) and the CLI (`--option PASS.OPTION=VALUE`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec.ir.interval import Interval

GOLDEN = Path(__file__).parents[1] / "golden" / "mlp_digits"


def _calibration() -> dict[str, np.ndarray]:
    return {"input": np.load(GOLDEN / "calibration.npz")["input"]}


def _output_range(model: fhec.CompiledModel) -> Interval:
    value = model.module.function.outputs[0][1]
    found = model.module.graph.node(value).annotation(Interval)
    assert found is not None
    return found


def test_an_option_reaches_its_pass_and_is_recorded() -> None:
    plain = fhec.compile(GOLDEN / "model.onnx", calibration=_calibration())
    wide = fhec.compile(
        GOLDEN / "model.onnx",
        calibration=_calibration(),
        options={"annotate-ranges": {"margin": 0.5}},
    )
    base, widened = _output_range(plain), _output_range(wide)
    assert widened.lo == pytest.approx(base.lo - 0.5 * base.width)
    assert widened.hi == pytest.approx(base.hi + 0.5 * base.width)
    assert "annotate-ranges{margin=0.5}" in wide.pipeline


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"quantize-tfhe": {"bits": 5}}, "pipeline does not run"),
        ({"annotate-ranges": {"margn": 0.1}}, "has no option 'margn'"),
        ({"annotate-ranges": {"margin": "wide"}}, "expected a number"),
        ({"annotate-ranges": 0.1}, "options must be {pass name: {option: value}}"),
    ],
)
def test_bad_options_are_clear_errors(options: object, message: str) -> None:
    with pytest.raises(fhec.FhecError, match=message):
        fhec.compile(GOLDEN / "model.onnx", options=options)  # type: ignore[arg-type]


def _fhec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhec", *args], capture_output=True, text=True, check=False
    )


def test_cli_option_sets_a_pass_option() -> None:
    result = _fhec(
        "inspect", str(GOLDEN / "model.onnx"), "--calibration", str(GOLDEN / "calibration.npz"),
        "--option", "annotate-ranges.margin=0.5",
    )
    assert result.returncode == 0, result.stderr
    plain = _fhec(
        "inspect", str(GOLDEN / "model.onnx"), "--calibration", str(GOLDEN / "calibration.npz")
    )
    assert result.stdout != plain.stdout


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("margin=0.5", "expected PASS.OPTION=VALUE"),
        ("annotate-ranges.margin", "expected PASS.OPTION=VALUE"),
        ("annotate-ranges.nope=1", "has no option 'nope'"),
    ],
)
def test_cli_bad_option_is_one_error_line(option: str, message: str) -> None:
    result = _fhec("inspect", str(GOLDEN / "model.onnx"), "--option", option)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
