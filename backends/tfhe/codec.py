"""The client's clear computation around a TFHE circuit: quantize before, finish after.

`encode` runs the nodes before encryption (through each op's `evaluate`) and
quantizes what the server needs, refusing inputs that the calibrated quantizers do
not cover; `decode` takes the decrypted integers and runs the rest of the module in
float (dequantization, the last bias and activation, argmax, ...). No concrete here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fhec.ir.errors import InputError, InternalCompilerError
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.tfhe import QuantizeOp
from fhec.passes.lower_to_integer import Partition, partition

# A quantizer clips inputs a little outside its calibrated range (held-out data often
# goes a bit beyond the calibration samples); beyond this fraction of the range's
# width, the calibration data did not cover the inputs and the result would be wrong.
TOLERANCE = 0.5


@dataclass(slots=True)
class Encoded:
    """The integers to encrypt, in the circuit's argument order, and the clear values
    the client keeps for `decode`."""

    arguments: list[np.ndarray]
    clear: dict[ValueId, np.ndarray] = field(default_factory=dict)


class Codec:
    def __init__(self, module: Module) -> None:
        self.module = module
        self.split: Partition = partition(module)

    def encode(self, inputs: Mapping[str, np.ndarray]) -> Encoded:
        """For inputs of exactly the compiled shapes (the caller checks and batches)."""
        graph = self.module.graph
        values: dict[ValueId, np.ndarray] = {}
        for value in self.split.client_before:
            values[value] = self._evaluate(value, values, inputs)
        arguments = []
        for value in self.split.encrypted_inputs:
            operand = graph.operands(value)[0]
            self._check_covered(value, values[operand])
            arguments.append(graph.node(value).op.evaluate([values[operand]]))
        return Encoded(arguments, values)

    def decode(self, encoded: Encoded, decrypted: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        values = dict(encoded.clear)
        values.update(zip(self.split.encrypted_inputs, encoded.arguments, strict=True))
        values.update(zip(self.split.encrypted_outputs, decrypted, strict=True))
        for value in self.split.client_after:
            values[value] = self._evaluate(value, values, {})
        return {name: values[value] for name, value in self.module.function.outputs}

    def _evaluate(
        self, value: ValueId, values: dict[ValueId, np.ndarray], inputs: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        node = self.module.graph.node(value)
        if isinstance(node.op, InputOp):
            return np.asarray(inputs[node.op.input_name], dtype=node.type.dtype.numpy)
        operands = [values[o] for o in self.module.graph.operands(value)]
        result = np.asarray(node.op.evaluate(operands))
        if result.shape != node.type.shape:
            raise InternalCompilerError(
                f"{node.op.name} computed shape {result.shape}, its type says {node.type.shape}",
                "tfhe",
            )
        return result.astype(node.type.dtype.numpy, copy=False)

    def _check_covered(self, value: ValueId, x: np.ndarray) -> None:
        op = self.module.graph.node(value).op
        assert isinstance(op, QuantizeOp)
        steps = op.unclipped(x)
        low, high = op.bounds
        slack = TOLERANCE * (high - low)
        outside = (steps < low - slack) | (steps > high + slack)
        if not outside.any():
            return
        index = np.unravel_index(int(np.argmax(outside)), x.shape)
        channel = index[op.axis] if len(op.scale) > 1 else 0
        scale, zero = op.scale[channel], op.zero_point[channel]
        covered = ((low - zero) * scale, (high - zero) * scale)
        where = f" (feature {channel})" if len(op.scale) > 1 else ""
        raise InputError(
            f"{self._describe(value)}{where} holds {float(x[index]):.6g}, far outside the range "
            f"[{covered[0]:.6g}, {covered[1]:.6g}] the circuit was calibrated for",
            hint="compile again with calibration data that covers such inputs",
        )

    def _describe(self, value: ValueId) -> str:
        graph = self.module.graph
        source = graph.node(graph.operands(value)[0])
        if isinstance(source.op, InputOp):
            return f"input {source.op.input_name!r}"
        return f"the encrypted input of {graph.node(value).location.describe()}"
