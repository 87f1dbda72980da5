"""A session folder of small models, data files and compiled artifacts for the CLI tests."""

from __future__ import annotations

import numpy as np
import onnx_builders
import pytest
from cli_helpers import Workspace

import fhec


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("cli")
    onnx_builders.mlp(root / "mlp.onnx")
    onnx_builders.int_input(root / "ints.onnx")
    onnx_builders.symbolic_width(root / "symbolic.onnx")
    rng = np.random.default_rng(1)
    np.savez(root / "inputs.npz", x=rng.standard_normal((5, 4)).astype(np.float32))
    np.savez(root / "calibration.npz", x=rng.uniform(-2, 3, (7, 4)).astype(np.float32))
    fhec.compile(root / "mlp.onnx").save(root / "mlp.fhec")
    fhec.compile(root / "ints.onnx").save(root / "ints.fhec")
    return Workspace(root)
