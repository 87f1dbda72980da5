"""`fhec demo`: compile the bundled digits classifier and run it on every backend.

For each backend in `fhec.api.BACKENDS`: compile (calibrated on the test inputs
themselves: a demo, where real use calibrates on held-out data), run on the bundled
test set, and compare with onnxruntime on the original ONNX file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from fhec.ir.errors import FhecError, InputError

DEMO_MODEL = "demo_digits_mlp.onnx"
DEMO_DATA = "demo_digits_test.npz"
LABEL = "label"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How the demo runs one backend: at most `max_samples` samples, with pass options."""

    max_samples: int | None = None
    options: Mapping[str, Mapping[str, object]] | None = None


# TFHE evaluates one sample at a time (about a second each at 5 bits on 2 cores, where
# 6 bits costs 5 s and a 17 s key generation): the demo runs it on the first ten test
# samples, with 5-bit activations and lookups. CKKS packs all samples into its slots.
BACKEND_SETTINGS: dict[str, DemoSettings] = {
    "tfhe": DemoSettings(
        max_samples=10,
        options={"quantize-tfhe": {"bits": 5}, "round-accumulators": {"bits": 5}},
    ),
}


@dataclass(frozen=True, slots=True)
class DemoRow:
    backend: str
    samples: int
    max_abs_diff: float
    accuracy: float
    compile_seconds: float
    run_seconds: float


@dataclass(frozen=True, slots=True)
class DemoResult:
    model: Path
    samples: int
    rows: tuple[DemoRow, ...]


def run_demo(
    model: str | Path | None = None,
    data: str | Path | None = None,
    *,
    backends: Sequence[str] | None = None,
    limit: int | None = None,
) -> DemoResult:
    """Compile `model` (default: the bundled digits MLP) for each backend and run it on
    `data` (default: the bundled test set: the model's inputs and `label`)."""
    from fhec import api
    from fhec.runtime.npz import load_npz

    model_path = Path(model) if model is not None else _bundled(DEMO_MODEL)
    data_path = Path(data) if data is not None else _bundled(DEMO_DATA)
    arrays = load_npz(data_path, "demo data")
    if LABEL not in arrays:
        raise InputError(
            f"demo data '{data_path}' has no {LABEL!r} array",
            hint="store the class index of each sample as 'label'",
        )
    labels = arrays.pop(LABEL)
    if limit is not None:
        arrays = {name: array[:limit] for name, array in arrays.items()}
        labels = labels[:limit]
    expected = onnxruntime_outputs(model_path, arrays)
    rows = tuple(
        _run_backend(backend, model_path, arrays, labels, expected)
        for backend in (backends or api.BACKENDS)
    )
    return DemoResult(model_path, len(labels), rows)


def _bundled(name: str) -> Path:
    path = Path(str(resources.files("fhec.data").joinpath(name)))
    if not path.is_file():
        raise FhecError(
            f"the bundled demo file {path} is missing",
            hint="create it with `python examples/build_models.py`, "
            "or pass --model MODEL.onnx --data DATA.npz",
        )
    return path


def _run_backend(
    backend: str,
    model_path: Path,
    inputs: dict[str, np.ndarray],
    labels: np.ndarray,
    expected: Mapping[str, np.ndarray],
) -> DemoRow:
    from fhec import api

    settings = BACKEND_SETTINGS.get(backend, DemoSettings())
    count = min(len(labels), settings.max_samples or len(labels))
    run_inputs = {name: array[:count] for name, array in inputs.items()}
    start = time.perf_counter()
    compiled = api.compile(model_path, backend, calibration=inputs, options=settings.options)
    compiled_at = time.perf_counter()
    outputs = compiled.run(run_inputs)
    finished = time.perf_counter()
    return DemoRow(
        backend,
        count,
        max_abs_diff(outputs, {name: array[:count] for name, array in expected.items()}),
        accuracy(next(iter(outputs.values())), labels[:count]),
        compiled_at - start,
        finished - compiled_at,
    )


def onnxruntime_outputs(model: Path, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The original model's outputs by name, from onnxruntime (the reference)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # small models; the machine may be shared
    try:
        session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise FhecError(f"onnxruntime cannot load '{model}': {exc}") from None
    feed = {}
    for info in session.get_inputs():
        if info.name not in inputs:
            raise InputError(f"the demo data has no array for input {info.name!r}")
        feed[info.name] = inputs[info.name].astype(_onnx_numpy_type(info.type), copy=False)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def _onnx_numpy_type(onnx_type: str) -> np.dtype[np.generic]:
    # onnxruntime spells input types "tensor(float)", "tensor(int64)", ...
    names = {"float": "float32", "double": "float64", "bool": "bool"}
    element = onnx_type.removeprefix("tensor(").removesuffix(")")
    return np.dtype(names.get(element, element))


def max_abs_diff(outputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> float:
    return max(
        (
            float(np.max(np.abs(outputs[name].astype(np.float64) - want.astype(np.float64))))
            for name, want in expected.items()
            if name in outputs and want.size
        ),
        default=0.0,
    )


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose predicted class is the label: the arg-max of class scores,
    or the output itself when the model already gives class indices."""
    predicted = scores.argmax(axis=-1) if scores.ndim >= 2 and scores.dtype.kind == "f" else scores
    predicted = np.asarray(predicted).reshape(-1)
    truth = np.asarray(labels).reshape(-1)
    if predicted.shape != truth.shape:
        raise InputError(
            f"the demo data has {truth.size} labels for {predicted.size} predictions",
            hint="give one class index per sample as 'label'",
        )
    return float(np.mean(predicted == truth)) if truth.size else 0.0


def demo_table(result: DemoResult) -> str:
    from fhec.cli import format_table

    rows = [("backend", "samples", "max |diff| vs onnxruntime", "accuracy", "compile s", "run s")]
    rows += [
        (
            row.backend,
            str(row.samples),
            f"{row.max_abs_diff:.3g}",
            f"{row.accuracy:.3f}",
            f"{row.compile_seconds:.2f}",
            f"{row.run_seconds:.2f}",
        )
        for row in result.rows
    ]
    header = f"fhec demo: {result.model.name}, {result.samples} test samples"
    return header + "\n" + format_table(rows)
