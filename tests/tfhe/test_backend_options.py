"""The tfhe backend's own options (concrete's configuration), from the API
(`options={"tfhe": {...}}`) and the CLI (`--option tfhe.OPTION=VALUE`): they reach the
compiled circuit and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fhec
from fhec.cli import main

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "logreg_breast_cancer"


def test_api_options_reach_concrete() -> None:
    calibration = dict(np.load(GOLDEN / "calibration.npz"))
    model = fhec.compile(GOLDEN / "model.onnx", backend="tfhe", calibration=calibration,
                         options={"tfhe": {"p_error": 1e-9}})
    config = model.report["config"]
    assert isinstance(config, dict)
    assert config["p_error"] == 1e-9 and config["global_p_error"] == 1e-5


def test_cli_option_text_is_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compile", str(GOLDEN / "model.onnx"), "--backend", "tfhe",
                 "--calibration", str(GOLDEN / "calibration.npz"),
                 "--option", "tfhe.global_p_error=1e-7",
                 "--option", "tfhe.compress_evaluation_keys=false",
                 "-o", str(tmp_path / "model.fhec"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["global_p_error"] == 1e-7
    assert report["config"]["compress_evaluation_keys"] is False


def test_reference_backend_has_no_options() -> None:
    with pytest.raises(fhec.FhecError, match="the reference backend has no options"):
        fhec.compile(GOLDEN / "model.onnx", options={"reference": {"fast": True}})
