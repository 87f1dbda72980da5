"""The CKKS backend: encrypted inference through Microsoft SEAL (seal-python).

`CKKS_BACKEND` implements the Backend protocol (backends/base.py): its pipeline is
the common one followed by approximate-activations, expand-polynomials-ckks,
pack-slots-ckks and the scale, level and parameter passes; `build` turns the module
that comes out into a `CkksCircuit`. SEAL is imported only inside `build` / `load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.ir.signature import Signature
from fhec.passes.pipelines import PIPELINES

if TYPE_CHECKING:
    from fhec.backends.ckks.circuit import CkksCircuit


@dataclass(frozen=True, slots=True)
class CkksBackend:
    name: str = "ckks"
    pipeline: tuple[str, ...] = field(default_factory=lambda: PIPELINES["ckks"])

    def build(
        self, module: Module, signature: Signature, options: Mapping[str, object]
    ) -> CkksCircuit:
        from fhec.backends.ckks.circuit import CkksCircuit

        own = sorted(set(options) - {"calibration", "batch_size"})
        if own:
            raise FhecError(
                f"the ckks backend has no option {own[0]!r}",
                hint="its settings are pass options, e.g. select-params-ckks.security=192",
            )
        return CkksCircuit(module, signature)

    def load(self, module: Module, signature: Signature, files: Mapping[str, bytes]) -> CkksCircuit:
        from fhec.backends.ckks.circuit import load_circuit

        return load_circuit(module, signature, files)


CKKS_BACKEND = CkksBackend()

__all__ = ["CKKS_BACKEND", "CkksBackend"]
