"""The Python API: compile an ONNX model for a backend, run it, save and load it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fhec.ir.errors import FhecError, InputError
from fhec.ir.graph import Module
from fhec.ir.signature import Signature

if TYPE_CHECKING:
    import onnx

Calibration = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]
BACKENDS = ("reference",)


@dataclass(slots=True)
class CompiledModel:
    """A model compiled for one backend: run it, inspect it, save it."""

    backend: str
    module: Module
    signature: Signature
    pipeline: tuple[str, ...]
    report: dict[str, object] = field(default_factory=dict)

    def run(self, inputs: Mapping[str, np.ndarray], *, mode: str = "execute") -> dict[str, np.ndarray]:
        """Outputs by ONNX output name, for inputs by ONNX input name (any batch size
        the model admits)."""
        from fhec.backends.reference import evaluate
        from fhec.runtime.batching import run_batched

        if mode not in ("execute", "simulate"):
            raise InputError(f"unknown run mode {mode!r}", hint="use 'execute' or 'simulate'")
        return run_batched(self.signature, inputs, lambda chunk: evaluate(self.module, chunk))

    @property
    def ir(self) -> str:
        from fhec.ir.printer import print_module

        return print_module(self.module)

    def save(self, path: str | Path) -> None:
        self._artifact().save(path)

    def to_bytes(self) -> bytes:
        return self._artifact().to_bytes()

    def _artifact(self) -> object:
        from fhec.runtime.artifact import Artifact

        return Artifact(self.backend, self.module, self.signature, self.pipeline, self.report)


def compile(  # noqa: A001  (the public name the contract gives)
    model: str | Path | onnx.ModelProto,
    backend: str = "reference",
    *,
    calibration: Calibration | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    batch_size: int | None = None,
    pipeline: Sequence[str] | None = None,
) -> CompiledModel:
    """Compile `model` (a path or an onnx.ModelProto) for `backend`.

    `calibration` is {input name: array} with the samples on the batch axis, or a list
    of such dicts; it sets the value ranges the passes rely on. The compiled batch size
    is `batch_size` (default 1); `run` takes any number of samples.
    """
    from fhec.frontend import import_onnx
    from fhec.passes import PassContext, parse_pipeline, pipeline_for, run_pipeline
    from fhec.runtime.calibration import calibration_samples

    if backend not in BACKENDS:
        raise FhecError(f"unknown backend {backend!r}", hint=f"choose one of: {', '.join(BACKENDS)}")
    if batch_size is not None and batch_size < 1:
        raise FhecError(f"batch size must be at least 1, got {batch_size}")
    imported = import_onnx(model, input_shapes=input_shapes, batch_size=batch_size or 1)
    names = tuple(pipeline) if pipeline is not None else pipeline_for(backend)
    samples = calibration_samples(imported.signature, calibration)
    module = run_pipeline(imported.module, parse_pipeline(",".join(names)), PassContext(samples))
    return CompiledModel(backend, module, imported.signature, names)


def load(path: str | Path) -> CompiledModel:
    """A compiled model saved by `CompiledModel.save` (validated on load)."""
    from fhec.runtime.artifact import Artifact

    artifact = Artifact.load(path)
    if artifact.backend not in BACKENDS:
        from fhec.ir.errors import ArtifactError

        raise ArtifactError(f"artifact for unknown backend {artifact.backend!r}")
    return CompiledModel(
        artifact.backend, artifact.module, artifact.signature, artifact.pipeline, artifact.report
    )
