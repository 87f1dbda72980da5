"""Shared by the training tests: the examples folder on the path (the examples hold the
models and reference loops the tests check against), the CLI tests' helpers, and small
ONNX models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
for folder in (ROOT / "examples", ROOT / "tests" / "training", ROOT / "tests" / "cli"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import training_models  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the small models of training_models.py, by their function names."""
    root = tmp_path_factory.mktemp("training")
    for build in training_models.BUILDERS:
        build(root / f"{build.__name__}.onnx")
    return root
