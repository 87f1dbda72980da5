"""The API tests share the CLI tests' model builders and artifact edits (tests/cli)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CLI_TESTS = Path(__file__).parents[1] / "cli"
if str(CLI_TESTS) not in sys.path:
    sys.path.insert(0, str(CLI_TESTS))

import onnx_builders  # noqa: E402

import fhec  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with mlp.onnx, ints.onnx, int8.onnx, mixed.onnx, symbolic.onnx, nms.onnx,
    two.onnx."""
    root = tmp_path_factory.mktemp("api")
    onnx_builders.mlp(root / "mlp.onnx")
    onnx_builders.int_input(root / "ints.onnx")
    onnx_builders.int_input(root / "int8.onnx", elem_type=3)  # TensorProto.INT8
    onnx_builders.batched_plus_fixed(root / "mixed.onnx")
    onnx_builders.symbolic_width(root / "symbolic.onnx")
    onnx_builders.non_max_suppression(root / "nms.onnx")
    onnx_builders.sum_of_two(root / "two.onnx")
    return root


@pytest.fixture(scope="session")
def mlp(models: Path) -> fhec.CompiledModel:
    return fhec.compile(models / "mlp.onnx")
