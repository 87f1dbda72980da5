"""The TFHE circuit: build from the integer module, run, report, save and load.

Artifact files: see backends/tfhe/files.py. No pickle: concrete's own MLIR and JSON,
and fhec's JSON. On load the MLIR is compiled again and must give the stored client
specs, or the artifact is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import cast

import numpy as np

from fhec.backends.tfhe.codec import Codec
from fhec.backends.tfhe.config import TfheConfig
from fhec.backends.tfhe.emit import emit
from fhec.backends.tfhe.files import FORMAT, FORMAT_VERSION, HEADER, MLIR, SPECS, read_header
from fhec.backends.tfhe.keys import ClientKeys
from fhec.backends.tfhe.program import ServerProgram, concrete_version, load_program
from fhec.ir.errors import ArtifactError, CompileError, InputError
from fhec.ir.graph import Module
from fhec.ir.ops.tfhe import BitWidth, LookupOp, QuantizeOp, RoundOp
from fhec.ir.signature import Signature
from fhec.passes.annotate_bit_widths import bit_widths

Arrays = dict[str, np.ndarray]
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
        self.samples_per_run: int | None = None  # exactly the compiled batch (padded)
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
        """The IR's facts (lookups, widths) and concrete's (bootstraps, keys, error)."""
        stats = self.statistics
        return {
            "scheme": f"TFHE (concrete-python {concrete_version()})",
            **integer_report(self.module),
            "programmable_bootstraps": stats.get("programmable_bootstrap_count"),
            "key_bytes": {
                "secret": stats.get("size_of_secret_keys"),
                "bootstrap": stats.get("size_of_bootstrap_keys"),
                "keyswitch": stats.get("size_of_keyswitch_keys"),
            },
            "p_error": stats.get("p_error"),
            "global_p_error": stats.get("global_p_error"),
            "complexity": stats.get("complexity"),
            "concrete": stats,
            "config": self.program.config.to_json(),
        }

    def to_files(self) -> dict[str, bytes]:
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "concrete_python": concrete_version(),
            "config": self.program.config.to_json(),
            "statistics": self.statistics,
        }
        return {
            HEADER: json.dumps(header, indent=2, sort_keys=True).encode(),
            MLIR: self.program.mlir.encode(),
            SPECS: self.program.client_specs.serialize(),
        }


def build_circuit(
    module: Module, signature: Signature, options: Mapping[str, object]
) -> TfheCircuit:
    config = TfheConfig.from_options(options)
    codec = Codec(module)
    if not codec.split.encrypted_inputs:
        raise CompileError(
            "the module has no encrypted integer input: it did not go through the tfhe pipeline",
            hint="compile with backend='tfhe' and its default pipeline",
        )
    samples = list(cast(list[dict[str, np.ndarray]], options.get("calibration") or []))
    emitted = emit(module, codec, samples, config)
    return TfheCircuit(module, signature, ServerProgram(emitted.mlir, config), emitted.statistics)


def load_circuit(module: Module, signature: Signature, files: Mapping[str, bytes]) -> TfheCircuit:
    header = read_header(files, (HEADER, MLIR, SPECS))
    program = load_program(files, header)
    circuit = TfheCircuit(module, signature, program, cast(dict[str, object], header["statistics"]))
    _check_arguments(circuit, program.program_info())
    return circuit


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
    """The tensor shape of a circuit argument (of its abstract ciphertexts)."""
    info = cast(dict[str, dict[str, dict[str, object]]], gate).get("typeInfo", {})
    ciphertext = cast(dict[str, dict[str, list[int]]], info.get("lweCiphertext", {}))
    return tuple(ciphertext.get("abstractShape", {}).get("dimensions", []))


def integer_report(module: Module) -> dict[str, object]:
    """What the IR says: the lookups (one bootstrap per element), widths, quantizers."""
    graph = module.graph
    lines: list[str] = []
    lookups: list[tuple[int, int]] = []  # (elements, input bits) per lookup op
    for value in graph:
        node = graph.node(value)
        if not isinstance(node.op, LookupOp):
            continue
        source = graph.node(graph.operands(value)[0])
        width = source.annotation(BitWidth)
        lookups.append((node.type.size, width.width if width is not None else 0))
        rounded = (
            f", {source.op.lsbs} low bits rounded off" if isinstance(source.op, RoundOp) else ""
        )
        lines.append(
            f"{node.location.describe()}: {node.type.size} x {lookups[-1][1]}-bit{rounded}"
        )
    quantizers = [
        f"{graph.node(v).location.describe()}: {op.bits} bits"
        + (f", {len(op.scale)} channels" if len(op.scale) > 1 else "")
        for v in graph
        if isinstance(op := graph.node(v).op, QuantizeOp)
    ]
    widths = [width.width for width in bit_widths(module).values()]
    return {
        "lookups": sum(count for count, _ in lookups),
        "lookup_layers": lines,
        "max_lookup_bits": max((bits for _, bits in lookups), default=0),
        "max_bit_width": max(widths, default=0),
        "encrypted_inputs": quantizers,
    }
