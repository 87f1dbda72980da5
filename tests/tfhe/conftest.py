"""Fixtures of the TFHE tests."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tfhe_helpers import gemm_model, samples


@pytest.fixture(scope="session")
def toy() -> onnx.ModelProto:
    return gemm_model()


@pytest.fixture(scope="session")
def toy_calibration() -> dict[str, np.ndarray]:
    return {"x": samples(200)}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The accuracies the model tests measured, after the run."""
    lines = [
        str(value)
        for report in terminalreporter.stats.get("passed", [])
        for key, value in getattr(report, "user_properties", [])
        if key == "tfhe_accuracy"
    ]
    if lines:
        terminalreporter.section("tfhe accuracy")
        for line in lines:
            terminalreporter.write_line(line)
