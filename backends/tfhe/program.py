"""The server's half of a TFHE circuit: concrete's program, compiled from its MLIR.

Holds no secret: it evaluates encrypted values under the client's evaluation keys, or
simulates the same program (noise included) on clear integers. Built from the MLIR
text concrete-python emits, the same way when compiling and when loading an artifact,
so both give byte-identical client specs (`ClientSpecs.program_info`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from fhec.backends.tfhe.config import TfheConfig
from fhec.backends.tfhe.files import MLIR, SPECS, digest, program_info
from fhec.ir.errors import ArtifactError, FhecError

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

    @property
    def program_id(self) -> str:
        """Names this program in messages (a hash of its client specs)."""
        return digest(self.program_info())

    def run(
        self, arguments: Sequence[fhe.Value], evaluation_keys: fhe.EvaluationKeys
    ) -> list[fhe.Value]:
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


def load_program(files: Mapping[str, bytes], header: Mapping[str, object]) -> ServerProgram:
    """The server program in the files: its MLIR compiled again, checked against the
    stored client specs (the keys and ciphertexts clients make follow those)."""
    try:
        config = TfheConfig.from_json(cast(dict[str, object], header["config"]))
        mlir = files[MLIR].decode()
        stored = program_info(files[SPECS])
    except (FhecError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the TFHE artifact is corrupted: {exc}") from None
    program = ServerProgram(mlir, config)
    try:
        compiled = program.program_info()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"the TFHE artifact's {MLIR} does not compile: {reason}") from None
    if compiled != stored:
        raise ArtifactError(
            f"the TFHE artifact's {MLIR} does not give its {SPECS} "
            f"(saved with concrete-python {header.get('concrete_python')}, "
            f"this is {concrete_version()})",
            hint="compile the model again",
        )
    return program


def concrete_version() -> str:
    from importlib.metadata import version

    return version("concrete-python")


def _as_arrays(decoded: object, count: int) -> list[np.ndarray]:
    items = list(decoded) if count > 1 and isinstance(decoded, tuple) else [decoded]
    return [np.asarray(item, dtype=np.int64) for item in items]
