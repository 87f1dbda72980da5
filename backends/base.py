"""The backend protocol: what fhec.compile and the runtime need from a scheme.

A backend names its pipeline (a tuple of pass names, run by the pass manager
after the frontend), then turns the module that comes out of it into a
`Circuit`: something that runs one batch of the compiled shapes and can be
saved as artifact files. Backends load their FHE library lazily, inside
`build` / `load`, so `import fhec` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from fhec.ir.graph import Module
from fhec.ir.signature import Signature

Arrays = dict[str, np.ndarray]


class Circuit(Protocol):
    """A compiled module, ready to run batches of the compiled input shapes.

    `samples_per_run` is how many samples one `run` takes on the batch axis: None means
    exactly the compiled batch size (the runtime pads the last chunk); a number means
    any count up to it (CKKS's batch layout: one sample per slot), so nothing is padded.
    """

    samples_per_run: int | None

    def run(self, inputs: Arrays, mode: str) -> Arrays:
        """Keygen (once) + encrypt + evaluate + decrypt, or the backend's simulation."""
        ...

    def report(self) -> dict[str, object]:
        """JSON-able facts for `fhec compile --json`: parameters, depth, keys, error bounds."""
        ...

    def to_files(self) -> dict[str, bytes]:
        """Extra artifact files (never pickle): backend data beside manifest.json + module.ir."""
        ...


class Backend(Protocol):
    name: str
    pipeline: tuple[str, ...]

    def build(self, module: Module, signature: Signature, options: Mapping[str, object]) -> Circuit:
        """The circuit for `module` (already through `pipeline`)."""
        ...

    def load(self, module: Module, signature: Signature, files: Mapping[str, bytes]) -> Circuit:
        """The circuit saved by `to_files`, validated."""
        ...
