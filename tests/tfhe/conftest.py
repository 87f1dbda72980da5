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
