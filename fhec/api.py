"""The Python API: compile an ONNX model for a backend, run it, save and load it.

Every mistake in what the caller gives (the model, the options, calibration data,
inputs, artifacts) raises an `FhecError` subclass with a message that says what is
wrong and what to do; the CLI prints exactly that message.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from fhec.ir.errors import ArtifactError, FhecError, InputError
from fhec.ir.graph import Module
from fhec.ir.signature import Signature
from fhec.report import build_report, format_summary, predicted_classes

if TYPE_CHECKING:
    import onnx

    from fhec.backends.base import Backend, Circuit
    from fhec.runtime.artifact import Artifact

    Model: TypeAlias = str | os.PathLike[str] | onnx.ModelProto

Calibration = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]
PassOptions = Mapping[str, Mapping[str, object]]

# The backends `fhec.compile` accepts; the CLI and `fhec demo` take their list from here.
BACKENDS: tuple[str, ...] = ("reference", "ckks", "tfhe")
# Backends that build a circuit (backends/base.py's `Backend`), as "module:attribute",
# imported only when used. The reference backend interprets the IR and needs none.
BACKEND_OBJECTS: dict[str, str] = {
    "ckks": "fhec.backends.ckks:CKKS_BACKEND",
    "tfhe": "fhec.backends.tfhe:TFHE_BACKEND",
}
MODES = ("execute", "simulate")


@dataclass(slots=True)
class CompiledModel:
    """A model compiled for one backend: run it, inspect it, save it."""

    backend: str
    module: Module
    signature: Signature
    pipeline: tuple[str, ...]
    report: dict[str, object] = field(default_factory=dict)
    circuit: Circuit | None = None

    def run(
        self, inputs: Mapping[str, np.ndarray], *, mode: str = "execute"
    ) -> dict[str, np.ndarray]:
        """Outputs by ONNX output name, for inputs by ONNX input name (any batch size
        the model admits). `mode="simulate"` uses the backend's simulation where it
        has one (TFHE); the reference backend computes the same either way."""
        from fhec.runtime.batching import run_batched

        if mode not in MODES:
            raise InputError(f"unknown run mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
        per_run = self.circuit.samples_per_run if self.circuit and mode == "execute" else None
        return run_batched(
            self.signature, inputs, self._chunk_runner(mode), samples_per_run=per_run
        )

    def evaluate_accuracy(
        self, inputs: Mapping[str, np.ndarray], labels: np.ndarray, *, mode: str = "clear"
    ) -> float:
        """The fraction of samples whose predicted class is their label: the model's
        integer (label) output if it has one (skl2onnx classifiers), else the argmax of
        its one score output. `mode="clear"` computes the compiled module exactly by the
        reference interpreter (for TFHE: the quantized integer model, without
        encryption or bootstrapping noise); "simulate" and "execute" run as `run` does."""
        if mode not in ("clear", *MODES):
            raise InputError(
                f"unknown accuracy mode {mode!r}", hint="use one of: clear, execute, simulate"
            )
        if mode == "clear":
            from fhec.backends.reference import evaluate
            from fhec.runtime.batching import run_batched

            outputs = run_batched(
                self.signature, inputs, lambda chunk: evaluate(self.module, chunk)
            )
        else:
            outputs = self.run(inputs, mode=mode)
        predicted = predicted_classes(outputs)
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != predicted.shape:
            raise InputError(
                f"{labels.size} labels for {predicted.size} samples",
                hint="give one class index per sample, in the inputs' order",
            )
        return float(np.mean(predicted == labels))

    @property
    def error_bound(self) -> dict[str, float]:
        """The predicted maximum absolute error of each output (CKKS), by output name;
        zero for the reference backend, which computes the model exactly."""
        bound = self.report.get("error_bound")
        if isinstance(bound, dict):
            return {str(k): float(v) for k, v in bound.items()}
        return {spec.name: 0.0 for spec in self.signature.outputs}

    def _chunk_runner(self, mode: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        circuit = self.circuit
        if circuit is not None:
            return lambda chunk: circuit.run(chunk, mode)
        from fhec.backends.reference import evaluate

        return lambda chunk: evaluate(self.module, chunk)

    @property
    def ir(self) -> str:
        from fhec.ir.printer import print_module

        return print_module(self.module)

    def summary(self) -> str:
        """The report as text: the CLI's `fhec compile` output."""
        return format_summary(self.report)

    def save(self, path: str | os.PathLike[str]) -> None:
        self._artifact().save(path)

    def to_bytes(self) -> bytes:
        return self._artifact().to_bytes()

    def _artifact(self) -> Artifact:
        from fhec.runtime.artifact import Artifact

        files = self.circuit.to_files() if self.circuit is not None else {}
        return Artifact(
            self.backend, self.module, self.signature, self.pipeline, self.report, files
        )


def compile(
    model: Model,
    backend: str = "reference",
    *,
    calibration: Calibration | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    batch_size: int | None = None,
    pipeline: Sequence[str] | None = None,
    options: PassOptions | None = None,
) -> CompiledModel:
    """Compile `model` (a path or an onnx.ModelProto) for `backend`.

    `calibration` is {input name: array} with the samples on the batch axis, or a list
    of such dicts; it sets the value ranges the passes rely on, and fixes symbolic
    input dimensions that `input_shapes` ({input name: full shape}) leaves open. The
    compiled batch size is `batch_size` (default 1); `run` takes any number of samples.
    `pipeline` replaces the backend's list of pass names. `options` sets pass options,
    {pass name: {option: value}}, e.g. {"quantize-tfhe": {"bits": 5}}, on every run of
    that pass in the pipeline.
    """
    names = _check_pipeline(pipeline) if pipeline is not None else _pipeline_for(backend)
    pass_options, backend_options = split_backend_options(backend, options)
    names = with_options(names, pass_options)
    lowered = _lower(model, backend, names, calibration, input_shapes, batch_size)
    circuit = _build_circuit(backend, lowered, batch_size, backend_options)
    report = build_report(
        backend, lowered.module, lowered.signature, names, lowered.calibration_count
    )
    if lowered.notes:
        report["pass_notes"] = lowered.notes
    if circuit is not None:
        report.update(circuit.report())
    return CompiledModel(backend, lowered.module, lowered.signature, names, report, circuit)


def lower(
    model: Model,
    backend: str = "reference",
    *,
    after: str | None = None,
    calibration: Calibration | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    batch_size: int | None = None,
    options: PassOptions | None = None,
) -> Module:
    """The module after pass `after` of the backend's pipeline (after all of it when
    None): what `fhec inspect` prints. `after` may be `NAME` (its first run in the
    pipeline) or `NAME#K` (its K-th run)."""
    names = with_options(_pipeline_for(backend), split_backend_options(backend, options)[0])
    if after is not None:
        names = names[: pass_index(names, after, backend) + 1]
    return _lower(model, backend, names, calibration, input_shapes, batch_size).module


def pass_index(pipeline: Sequence[str], after: str, backend: str) -> int:
    """Where `NAME` or `NAME#K` stands in `pipeline`; an FhecError listing it otherwise."""
    name, _, occurrence = after.partition("#")
    positions = [index for index, item in enumerate(pipeline) if item.split("{")[0] == name]
    wanted = int(occurrence) if occurrence.isdigit() else 1 if not occurrence else 0
    if not positions or not 1 <= wanted <= len(positions):
        raise FhecError(
            f"the {backend} pipeline has no pass {after!r}",
            hint=f"its passes, in order: {', '.join(pipeline)} "
            "(write NAME#2 for a pass's second run)",
        )
    return positions[wanted - 1]


def load(path: str | os.PathLike[str]) -> CompiledModel:
    """A compiled model saved by `CompiledModel.save` (validated on load)."""
    from fhec.runtime.artifact import Artifact

    artifact = Artifact.load(path)
    if artifact.backend not in BACKENDS:
        raise ArtifactError(
            f"'{path}' was compiled for backend {artifact.backend!r}, which this fhec lacks",
            hint=f"this fhec has: {', '.join(BACKENDS)}",
        )
    circuit = None
    backend = _backend_object(artifact.backend)
    if backend is not None:
        circuit = backend.load(artifact.module, artifact.signature, artifact.extra_files)
    return CompiledModel(
        artifact.backend,
        artifact.module,
        artifact.signature,
        artifact.pipeline,
        artifact.report,
        circuit,
    )


# -- lowering ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lowered:
    module: Module
    signature: Signature
    calibration: list[dict[str, np.ndarray]]
    calibration_count: int
    notes: dict[str, str]  # what passes chose, by pass name (pack-slots-ckks's layout)


def _lower(
    model: Model,
    backend: str,
    names: tuple[str, ...],
    calibration: Calibration | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
    batch_size: int | None,
) -> _Lowered:
    from fhec.frontend import import_onnx, load_onnx
    from fhec.passes import PassContext, parse_pipeline, run_pipeline
    from fhec.runtime.calibration import calibration_set

    _check_backend(backend)
    batch = _check_batch_size(batch_size)
    shapes = _check_input_shapes(input_shapes)
    proto = load_onnx(_check_model(model))
    shapes = {**_shapes_from_calibration(proto, calibration, batch), **shapes}
    imported = import_onnx(proto, input_shapes=shapes, batch_size=batch)
    chunks, count = calibration_set(imported.signature, calibration)
    passes = parse_pipeline(",".join(names))
    context = PassContext(chunks)
    module = run_pipeline(imported.module, passes, context)
    return _Lowered(module, imported.signature, chunks, count, dict(context.notes))


def _build_circuit(
    backend: str, lowered: _Lowered, batch_size: int | None, backend_options: Mapping[str, object]
) -> Circuit | None:
    backend_object = _backend_object(backend)
    if backend_object is None:
        if backend_options:
            raise FhecError(f"the {backend} backend has no options of its own",
                            hint="its settings are pass options: {pass name: {option: value}}")
        return None
    options = {**backend_options, "calibration": lowered.calibration, "batch_size": batch_size or 1}
    return backend_object.build(lowered.module, lowered.signature, options)


def _backend_object(backend: str) -> Backend | None:
    spec = BACKEND_OBJECTS.get(backend)
    if spec is None:
        return None
    module_name, _, attribute = spec.partition(":")
    found: Backend = getattr(importlib.import_module(module_name), attribute)
    return found


def _pipeline_for(backend: str) -> tuple[str, ...]:
    from fhec.passes import pipeline_for

    _check_backend(backend)
    return pipeline_for(backend)


def _shapes_from_calibration(
    proto: onnx.ModelProto, calibration: Calibration | None, batch_size: int
) -> dict[str, tuple[int, ...]]:
    """Full shapes for inputs whose non-batch dimensions are symbolic, read off the first
    calibration dict (its batch axis set to the compiled batch size). Arrays of another
    rank are left to the importer and the calibration checks to report."""
    first = calibration if isinstance(calibration, Mapping) else None
    if isinstance(calibration, Sequence) and calibration and isinstance(calibration[0], Mapping):
        first = calibration[0]
    if first is None:
        return {}
    initializers = {t.name for t in proto.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for graph_input in proto.graph.input:
        if graph_input.name in initializers or graph_input.name not in first:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        symbolic = [not d.HasField("dim_value") for d in dims]
        try:
            shape = list(np.shape(first[graph_input.name]))
        except (ValueError, TypeError) as exc:  # ragged nested lists
            name = graph_input.name
            raise InputError(f"calibration input {name!r} is not an array: {exc}") from None
        if not any(symbolic[1:]) or len(shape) != len(dims):
            continue
        if symbolic[0]:
            shape[0] = batch_size
        shapes[graph_input.name] = tuple(shape)
    return shapes


# -- argument checks -----------------------------------------------------------------


def _check_backend(backend: object) -> None:
    if backend not in BACKENDS:
        raise FhecError(
            f"unknown backend {backend!r}", hint=f"choose one of: {', '.join(BACKENDS)}"
        )


def _check_model(model: object) -> str | onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, str | os.PathLike):
        return str(Path(model))
    raise FhecError(
        f"expected a path to an .onnx file or an onnx.ModelProto, got {type(model).__name__}"
    )


def _check_batch_size(batch_size: object) -> int:
    if batch_size is None:
        return 1
    if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool):
        raise FhecError(f"batch size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise FhecError(f"batch size must be at least 1, got {batch_size}")
    return int(batch_size)


def _check_input_shapes(input_shapes: object) -> dict[str, tuple[int, ...]]:
    if input_shapes is None:
        return {}
    if not isinstance(input_shapes, Mapping):
        raise FhecError(
            f"input_shapes must be a dict {{input name: shape}}, got {type(input_shapes).__name__}"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in input_shapes.items():
        dims = list(shape) if isinstance(shape, Sequence | np.ndarray) else None
        valid = dims is not None and all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in dims
        )
        if not isinstance(name, str) or not valid or dims is None:
            raise FhecError(
                f"the shape given for input {name!r} is {shape!r}",
                hint="give a sequence of positive integers, the full shape including the batch",
            )
        shapes[name] = tuple(int(d) for d in dims)
    return shapes


def split_backend_options(
    backend: str, options: PassOptions | None
) -> tuple[PassOptions | None, dict[str, object]]:
    """`options` less the entry named after the backend ({"tfhe": {"p_error": 1e-9}}: the
    backend's own settings, which its `build` checks), and that entry."""
    if not isinstance(options, Mapping) or backend not in options:
        return options, {}
    own = options[backend]
    if not isinstance(own, Mapping):
        raise FhecError(f"options[{backend!r}] must be {{option: value}}",
                        hint="e.g. {'tfhe': {'p_error': 1e-9}}")
    return {k: v for k, v in options.items() if k != backend}, dict(own)


def with_options(names: tuple[str, ...], options: PassOptions | None) -> tuple[str, ...]:
    """`names` with `options` ({pass: {option: value}}) spelled onto each run of a pass
    (`quantize-tfhe{bits=5}`); an option for a pass the pipeline lacks is an error.
    The options themselves are checked when the pipeline is parsed."""
    from fhec.passes.base import spell_option

    if not options:
        return names
    if not isinstance(options, Mapping) or not all(
        isinstance(values, Mapping) for values in options.values()
    ):
        raise FhecError(
            "options must be {pass name: {option: value}}",
            hint="e.g. {'quantize-tfhe': {'bits': 5}}",
        )
    bare = [name.split("{")[0] for name in names]
    for pass_name in options:
        if pass_name not in bare:
            raise FhecError(
                f"options given for pass {pass_name!r}, which the pipeline does not run",
                hint=f"its passes: {', '.join(dict.fromkeys(bare))}",
            )
    spelled = []
    for name in names:
        values = options.get(name.split("{")[0])
        if values and "{" in name:
            raise FhecError(f"pass {name!r} already has options in the pipeline")
        if values:
            text = ",".join(f"{key}={spell_option(value)}" for key, value in values.items())
            name = f"{name}{{{text}}}"
        spelled.append(name)
    return tuple(spelled)


def _check_pipeline(pipeline: object) -> tuple[str, ...]:
    if (
        isinstance(pipeline, str)
        or not isinstance(pipeline, Sequence)
        or not all(isinstance(name, str) for name in pipeline)
    ):
        raise FhecError("pipeline must be a list of pass names", hint="e.g. ['infer-shapes']")
    return tuple(pipeline)
