"""Golden-output regression: every `tests/golden/<case>/` through the reference backend.

Per case: the compiled module and the original graph both reproduce onnxruntime's
outputs (expected.npz); the IR after the common pipeline is expected.ir; a
classifier's accuracy on its held-out inputs is the float model's. Regenerate all
cases with `make golden` after reviewing an intended change.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fhec
from fhec.api import CompiledModel
from fhec.ir.printer import print_module

GOLDEN = Path(__file__).parent
EXAMPLES = GOLDEN.parent.parent / "examples"
CASE_NAMES = sorted(p.name for p in GOLDEN.iterdir() if (p / "model.onnx").is_file())
ELIDE_CONSTANTS_OVER = 64
RTOL, ATOL = 1e-4, 1e-5
REGENERATE = "review the change and run `make golden` if it is intended"


@dataclass(frozen=True)
class GoldenCase:
    folder: Path
    inputs: dict[str, np.ndarray]
    calibration: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    labels: np.ndarray | None

    @property
    def model_path(self) -> Path:
        return self.folder / "model.onnx"


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@functools.cache
def _case(name: str) -> GoldenCase:
    folder = GOLDEN / name
    inputs = _load_npz(folder / "inputs.npz")
    labels = inputs.pop("label", None)
    return GoldenCase(
        folder,
        inputs,
        _load_npz(folder / "calibration.npz"),
        _load_npz(folder / "expected.npz"),
        labels,
    )


@functools.cache
def _compiled(name: str) -> CompiledModel:
    case = _case(name)
    return fhec.compile(case.model_path, backend="reference", calibration=case.calibration)


@functools.cache
def _compiled_outputs(name: str) -> dict[str, np.ndarray]:
    # The whole held-out batch in one call: the runtime splits it into compiled batches.
    return _compiled(name).run(_case(name).inputs)


def _assert_outputs_match(
    got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]
) -> None:
    assert sorted(got) == sorted(expected), "output names differ from onnxruntime's"
    for name, want in expected.items():
        value = np.asarray(got[name])
        assert value.shape == want.shape, f"output {name!r}: shape {value.shape}, want {want.shape}"
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(value, want, err_msg=f"output {name!r}")
        else:
            np.testing.assert_allclose(
                value.astype(np.float64),
                want.astype(np.float64),
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"output {name!r}",
            )


@pytest.mark.parametrize("name", CASE_NAMES)
def test_compiled_module_matches_onnxruntime(name: str) -> None:
    _assert_outputs_match(_compiled_outputs(name), _case(name).expected)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_original_graph_matches_onnxruntime(name: str) -> None:
    case = _case(name)
    original = fhec.compile(case.model_path, backend="reference", pipeline=["infer-shapes"])
    _assert_outputs_match(original.run(case.inputs), case.expected)


# A float literal as the printer writes it (repr): the only tokens compared with a
# tolerance, since calibrated ranges may differ in the last bits across BLAS builds.
_FLOAT = re.compile(r"(?<![\w.])-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf|nan)(?![\w.])")


def _split_floats(text: str) -> tuple[str, list[float]]:
    return _FLOAT.sub("<float>", text), [float(m) for m in _FLOAT.findall(text)]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_ir_after_common_pipeline_matches_expected(name: str) -> None:
    printed = print_module(_compiled(name).module, elide_constants_over=ELIDE_CONSTANTS_OVER)
    expected = (GOLDEN / name / "expected.ir").read_text()
    if printed == expected:
        return
    diff = "\n".join(
        difflib.unified_diff(
            expected.splitlines(), printed.splitlines(), "expected.ir", "now", lineterm="", n=1
        )
    )
    message = f"the IR of {name} after the common pipeline changed; {REGENERATE}\n{diff}"
    printed_skeleton, printed_floats = _split_floats(printed)
    expected_skeleton, expected_floats = _split_floats(expected)
    same_numbers = len(printed_floats) == len(expected_floats) and np.allclose(
        printed_floats, expected_floats, rtol=1e-5, atol=1e-6
    )
    if printed_skeleton != expected_skeleton or not same_numbers:
        pytest.fail(message, pytrace=False)


def _predicted_classes(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """A label output if the model has one (skl2onnx), else the argmax of its scores."""
    for value in outputs.values():
        if value.dtype.kind in "iu":
            return np.asarray(value)
    (scores,) = outputs.values()
    return np.asarray(scores.argmax(axis=-1))


CLASSIFIERS = [name for name in CASE_NAMES if "label" in _load_npz(GOLDEN / name / "inputs.npz")]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_accuracy_equals_float_model(
    name: str, record_property: Callable[[str, object], None]
) -> None:
    case = _case(name)
    assert case.labels is not None
    float_accuracy = float(np.mean(_predicted_classes(case.expected) == case.labels))
    fhec_accuracy = float(np.mean(_predicted_classes(_compiled_outputs(name)) == case.labels))
    record_property(
        "golden_accuracy",
        f"{name}: fhec {fhec_accuracy:.4f}, onnxruntime {float_accuracy:.4f} "
        f"on {len(case.labels)} held-out samples",
    )
    assert fhec_accuracy == float_accuracy
    # A sanity floor: a golden classifier that guesses has lost its training.
    assert float_accuracy > 0.9


def test_readme_lists_every_case() -> None:
    readme = (GOLDEN / "README.md").read_text()
    listed = sorted(re.findall(r"^\| `(\w+)` \|", readme, flags=re.MULTILINE))
    assert listed == CASE_NAMES, f"README.md and the case folders disagree; {REGENERATE}"


def _op_graph_builders() -> dict[str, Callable[[], Any]]:
    # examples/ is a folder of scripts, not a package: import it as the scripts do.
    sys.path.insert(0, str(EXAMPLES))
    try:
        op_graphs = importlib.import_module("op_graphs")
    finally:
        sys.path.remove(str(EXAMPLES))
    return {build.__name__: build for build in op_graphs.OP_CASES}


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if n.startswith("ops_")])
def test_hand_built_case_is_what_the_builder_makes(name: str) -> None:
    """The committed model and samples are the builder's (cheap to check for the
    hand-built graphs: no training)."""
    case = _op_graph_builders()[name]()
    golden = _case(name)
    message = f"examples/op_graphs.py no longer builds tests/golden/{name}; {REGENERATE}"
    assert case.model.SerializeToString() == golden.model_path.read_bytes(), message
    for built, stored in ((case.inputs, golden.inputs), (case.calibration, golden.calibration)):
        assert sorted(built) == sorted(stored), message
        for key, array in built.items():
            np.testing.assert_array_equal(array, stored[key], err_msg=message)
