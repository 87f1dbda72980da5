"""The server's half of a TFHE circuit: concrete's program, compiled from its MLIR.

Holds no secret: it evaluates encrypted values under the client's evaluation keys, or
simulates the same program (noise included) on clear integers. Built from the MLIR
text concrete-python emits, the same way when compiling and when loading an artifact,
so both give byte-identical client specs (`ClientSpecs.program_info`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fhec.backends.tfhe.config import TfheConfig

if TYPE_CHECKING:
    from concrete import fhe


class ServerProgram:
    def __init__(self, mlir: str, config: TfheConfig) -> None:
        self.mlir = mlir
        self.config = config
        self._servers: dict[bool, fhe.Server] = {}

    def server(self, simulated: bool = False) -> fhe.Server:
        if simulated not in self._servers:
            from concrete import fhe

            self._servers[simulated] = fhe.Server.create(
                self.mlir, self.config.concrete(), is_simulated=simulated
            )
        return self._servers[simulated]

    @property
    def client_specs(self) -> fhe.ClientSpecs:
        return self.server().client_specs

    def program_info(self) -> dict[str, object]:
        """The client specs as JSON, without concrete's empty TFHE-rs section."""
        return program_info(self.client_specs.serialize())

    def run(self, arguments: Sequence[fhe.Value], evaluation_keys: fhe.EvaluationKeys) -> list[fhe.Value]:
        results = self.server().run(*arguments, evaluation_keys=evaluation_keys)
        return list(results) if isinstance(results, tuple) else [results]

    def simulate(self, arguments: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The program on clear integers, with concrete's noise simulation."""
        from concrete import fhe

        client = fhe.Client(self.client_specs, is_simulated=True)
        encoded = client.simulate_encrypt(*arguments)
        encoded_list = list(encoded) if isinstance(encoded, tuple) else [encoded]
        results = self.server(simulated=True).run(*encoded_list)
        decoded = client.simulate_decrypt(*(results if isinstance(results, tuple) else (results,)))
        return _as_arrays(decoded, len(results) if isinstance(results, tuple) else 1)


def program_info(specs: bytes) -> dict[str, object]:
    info: dict[str, object] = json.loads(specs)
    info.pop("tfhers_specs", None)
    return info


def _as_arrays(decoded: object, count: int) -> list[np.ndarray]:
    items = list(decoded) if count > 1 and isinstance(decoded, tuple) else [decoded]
    return [np.asarray(item, dtype=np.int64) for item in items]
