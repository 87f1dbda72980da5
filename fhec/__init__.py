"""fhec: compile ONNX models to fully homomorphic encryption circuits.

    import fhec
    model = fhec.compile("model.onnx", backend="reference", calibration=samples)
    outputs = model.run({"input": x})
    model.save("model.fhec"); model = fhec.load("model.fhec")
    trainer = fhec.compile_training("model.onnx", loss="cross-entropy", lr=0.1)

Importing fhec is light: the frontend (onnx), the passes and the FHE libraries
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhec.ir.errors import ArtifactError, CompileError, FhecError, InputError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fhec.api import CompiledModel, compile, load
    from fhec.training import TrainingModel, compile_training

__all__ = [
    "ArtifactError",
    "CompileError",
    "CompiledModel",
    "FhecError",
    "InputError",
    "TrainingModel",
    "__version__",
    "compile",
    "compile_training",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in ("compile", "load", "CompiledModel"):
        from fhec import api

        return getattr(api, name)
    if name in ("compile_training", "TrainingModel"):
        from fhec import training

        return getattr(training, name)
    raise AttributeError(f"module 'fhec' has no attribute {name!r}")
