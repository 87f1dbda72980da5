"""The TFHE circuit: build from the integer module, run, report, save and load.

Artifact files (beside the manifest and module.ir the runtime writes):
    tfhe.json          {"format": "fhec-tfhe", "format_version": 1, "concrete_python": ...,
                        "config": {...}, "statistics": {...}}
    circuit.mlir       the program concrete-python emitted (the server compiles it on load)
    client_specs.json  concrete's client specs: what keys and ciphertexts look like
No pickle: concrete's own MLIR and JSON, and fhec's JSON. On load the MLIR is compiled
again and must give the stored client specs, or the artifact is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import cast

import numpy as np

from fhec.backends.tfhe.codec import Codec
from fhec.backends.tfhe.config import TfheConfig
from fhec.backends.tfhe.emit import concrete_version, emit
from fhec.backends.tfhe.keys import ClientKeys
from fhec.backends.tfhe.program import ServerProgram, program_info
from fhec.ir.errors import ArtifactError, CompileError, FhecError, InputError
from fhec.ir.graph import Module
from fhec.ir.ops.tfhe import BitWidth, LookupOp, QuantizeOp, RoundOp
from fhec.ir.signature import Signature

Arrays = dict[str, np.ndarray]
FORMAT = "fhec-tfhe"
FORMAT_VERSION = 1
MODES = ("execute", "simulate")


class TfheCircuit:
    def __init__(
        self,
        module: Module,
        signature: Signature,
        program: ServerProgram,
        statistics: Mapping[str, object],
    ) -> None:
        self.module = module
        self.signature = signature
        self.codec = Codec(module)
        self.program = program
        self.statistics = dict(statistics)
        self._keys: ClientKeys | None = None

    # -- running -------------------------------------------------------------------
    def run(self, inputs: Arrays, mode: str) -> Arrays:
        """One batch of the compiled shapes: keygen (once), encrypt, evaluate, decrypt;
        or concrete's simulation of the same program on clear integers."""
        if mode not in MODES:
            raise InputError(f"unknown run mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
        encoded = self.codec.encode(inputs)
        if mode == "simulate":
            decrypted = self.program.simulate(encoded.arguments)
        else:
            keys = self.keys()
            results = self.program.run(keys.encrypt(encoded.arguments), keys.evaluation_keys())
            decrypted = keys.decrypt(results)
        return self.codec.decode(encoded, decrypted)

    def keys(self) -> ClientKeys:
        """This circuit's keys, generated on first use (the slow step: seconds)."""
        if self._keys is None:
            self._keys = ClientKeys(self.program.client_specs)
            self._keys.generate()
        return self._keys

    # -- reporting and saving ----------------------------------------------------------
    def report(self) -> dict[str, object]:
        return {"tfhe": {**integer_report(self.module), "concrete": self.statistics,
                         "config": self.program.config.to_json()}}

    def to_files(self) -> dict[str, bytes]:
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "concrete_python": concrete_version(),
            "config": self.program.config.to_json(),
            "statistics": self.statistics,
        }
        return {
            "tfhe.json": json.dumps(header, indent=2, sort_keys=True).encode(),
            "circuit.mlir": self.program.mlir.encode(),
            "client_specs.json": self.program.client_specs.serialize(),
        }


def build_circuit(module: Module, signature: Signature, options: Mapping[str, object]) -> TfheCircuit:
    config = TfheConfig.from_options(options)
    codec = Codec(module)
    if not codec.split.encrypted_inputs:
        raise CompileError(
            "the module has no encrypted integer input: it did not go through the tfhe pipeline",
            hint="compile with backend='tfhe' and its default pipeline",
        )
    samples = cast(list[dict[str, np.ndarray]], list(options.get("calibration", None) or []))
    emitted = emit(module, codec, samples, config)
    return TfheCircuit(module, signature, ServerProgram(emitted.mlir, config), emitted.statistics)


def load_circuit(module: Module, signature: Signature, files: Mapping[str, bytes]) -> TfheCircuit:
    for name in ("tfhe.json", "circuit.mlir", "client_specs.json"):
        if name not in files:
            raise ArtifactError(f"the TFHE artifact lacks {name}", hint="compile the model again")
    header = _header(files["tfhe.json"])
    try:
        config = TfheConfig.from_json(cast(dict[str, object], header["config"]))
        mlir = files["circuit.mlir"].decode()
        stored = program_info(files["client_specs.json"])
    except (FhecError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the TFHE artifact is corrupted: {exc}") from None
    program = ServerProgram(mlir, config)
    try:
        compiled = program.program_info()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"the TFHE artifact's circuit.mlir does not compile: {reason}") from None
    if compiled != stored:
        raise ArtifactError(
            "the TFHE artifact's circuit does not match its client specs "
            f"(saved with concrete-python {header.get('concrete_python')}, "
            f"this is {concrete_version()})",
            hint="compile the model again",
        )
    circuit = TfheCircuit(module, signature, program, cast(dict[str, object], header["statistics"]))
    _check_arguments(circuit, compiled)
    return circuit


def _header(data: bytes) -> dict[str, object]:
    try:
        header = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"the TFHE artifact's tfhe.json is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArtifactError("the TFHE artifact's tfhe.json is not an fhec TFHE header")
    version = header.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ArtifactError(
            f"the TFHE artifact has format version {version!r}; this fhec reads 1 to "
            f"{FORMAT_VERSION}",
            hint="compile the model again with this fhec",
        )
    if not isinstance(header.get("config"), dict) or not isinstance(header.get("statistics"), dict):
        raise ArtifactError("the TFHE artifact's tfhe.json lacks its config or statistics")
    return header


def _check_arguments(circuit: TfheCircuit, info: dict[str, object]) -> None:
    """The module's encrypted inputs and outputs are the program's, in number and shape."""
    circuits = cast(list[dict[str, object]], info.get("circuits", []))
    split = circuit.codec.split
    graph = circuit.module.graph
    if len(circuits) != 1:
        raise ArtifactError(f"the TFHE artifact holds {len(circuits)} circuits, expected 1")
    for key, values in (("inputs", split.encrypted_inputs), ("outputs", split.encrypted_outputs)):
        gates = cast(list[dict[str, object]], circuits[0].get(key, []))
        shapes = [tuple(graph.node(v).type.shape) for v in values]
        if len(gates) != len(shapes) or any(
            _gate_shape(gate) != shape for gate, shape in zip(gates, shapes, strict=False)
        ):
            raise ArtifactError(f"the TFHE artifact's circuit {key} do not match its module.ir")


def _gate_shape(gate: dict[str, object]) -> tuple[int, ...]:
    raw = cast(dict[str, dict[str, dict[str, object]]], gate).get("rawInfo", {})
    dims = raw.get("shape", {}).get("dimensions", [])
    return tuple(cast(list[int], dims))


def integer_report(module: Module) -> dict[str, object]:
    """What the IR says: quantizers, lookups (one bootstrap per element), widths."""
    graph = module.graph
    layers = []
    lookups = 0
    for value in graph:
        node = graph.node(value)
        if not isinstance(node.op, LookupOp):
            continue
        lookups += node.type.size
        source = graph.operands(value)[0]
        source_node = graph.node(source)
        width = source_node.annotation(BitWidth)
        rounding = source_node.op.lsbs if isinstance(source_node.op, RoundOp) else 0
        layers.append({
            "at": node.location.describe(),
            "lookups": node.type.size,
            "input_bits": width.width if width else None,
            "rounded_bits": rounding,
        })
    quantizers = [
        {"at": graph.node(v).location.describe(), "bits": op.bits, "scale": op.scale,
         "zero_point": op.zero_point}
        for v in graph if isinstance(op := graph.node(v).op, QuantizeOp)
    ]
    widths = [a.width for v in graph if (a := graph.node(v).annotation(BitWidth)) is not None]
    return {
        "lookup_count": lookups,
        "max_lookup_bits": max((layer["input_bits"] or 0 for layer in layers), default=0),
        "max_bit_width": max(widths, default=0),
        "lookups": layers,
        "input_quantizers": quantizers,
    }
