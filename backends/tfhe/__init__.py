"""The TFHE backend: quantized integer circuits, compiled and run by concrete-python.

The pipeline (passes/pipelines.py, "tfhe") quantizes the model (quantize-tfhe),
lowers it to integer layers and one table lookup between them (lower-to-integer),
rounds accumulators to a bit budget (round-accumulators) and records every width
(annotate-bit-widths). `build` emits the server region as a concrete-python function
and compiles it with the quantized calibration inputset (backends/tfhe/emit.py).
concrete (which imports torch) loads only inside `build` and `load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhec.passes.pipelines import PIPELINES

if TYPE_CHECKING:
    from fhec.backends.tfhe.circuit import TfheCircuit
    from fhec.ir.graph import Module
    from fhec.ir.signature import Signature


@dataclass(frozen=True, slots=True)
class TfheBackend:
    name: str = "tfhe"
    pipeline: tuple[str, ...] = PIPELINES["tfhe"]

    def build(
        self, module: Module, signature: Signature, options: Mapping[str, object]
    ) -> TfheCircuit:
        """Options: `calibration` (the samples fhec.compile passes), and the concrete
        options of `TfheConfig` (p_error, global_p_error, compress_evaluation_keys,
        security_level)."""
        import_concrete_quietly()
        from fhec.backends.tfhe.circuit import build_circuit

        return build_circuit(module, signature, options)

    def load(self, module: Module, signature: Signature, files: Mapping[str, bytes]) -> TfheCircuit:
        import_concrete_quietly()
        from fhec.backends.tfhe.circuit import load_circuit

        return load_circuit(module, signature, files)


def import_concrete_quietly() -> None:
    """Import concrete once with its pkg_resources deprecation warnings silenced: they
    are about concrete's packaging, say nothing to our users, and would break the
    CLI's one-line error output."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*")
        warnings.filterwarnings("ignore", message=".*declare_namespace.*")
        import concrete.fhe  # noqa: F401


TFHE_BACKEND = TfheBackend()

__all__ = ["TFHE_BACKEND", "TfheBackend"]
