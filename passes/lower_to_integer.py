"""lower-to-integer: integer layers with clear weights, and one table lookup between them.

Applies to: the QDQ form quantize-tfhe establishes. Requires: `quantize-tfhe`, and
calibration samples in the pass context (they size the lookup tables).
Establishes three regions, told apart by `partition` below:
- client, before encryption: every node the inputs reach before a `tfhe.quantize`
  (in clear; the quantize ops are where the client encrypts);
- server: i64 `linalg.matmul` / `linalg.conv` of encrypted integers by clear integer
  weights (average pools become window sums, a grouped convolution by ones; Flatten a
  `tensor.reshape`; a Conv's padding a `tensor.pad` with the zero point), max pools
  as taps (grouped convolutions by one-hot kernels) reduced pairwise by
  max(a, b) = a + relu(b - a), the relu a `tfhe.lookup` of the exact difference, and
  `tfhe.lookup`: a layer's accumulator goes straight into one lookup that applies,
  in one table, its requantization (scales, zero points, bias) and every univariate
  op up to the next layer's quantizer (ReLU, Sigmoid, GELU, arithmetic with
  constants, ...);
- client, after decryption: `tfhe.dequantize` of an accumulator and what follows,
  in float: the last layer's bias and activation never cost a lookup.

The pass runs in phases, one module each: the layers (passes/tfhe_layers.py: the
integer products, and the arithmetic that carries a layer's scales, zero points and
bias); a Softmax or LogSoftmax between layers (passes/tfhe_softmax.py: exponentials
and logarithms through lookups); calibration of every encrypted integer
(passes/tfhe_integers.py); one lookup per requantization (passes/tfhe_lookups.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.errors import CompileError, FhecError, InternalCompilerError
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.tfhe import DequantizeOp, QuantizeOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.quantize_tfhe import MAX_BITS
from fhec.passes.tfhe_integers import SERVER_OPS, calibrated_integer_ranges, integer_width
from fhec.passes.tfhe_layers import lower_layers
from fhec.passes.tfhe_lookups import fuse_lookups
from fhec.passes.tfhe_softmax import lower_softmaxes

# Names other modules import from here (round-accumulators, annotate-bit-widths, the
# backend's codec, training): they keep working.
__all__ = [
    "SERVER_OPS",
    "LowerToInteger",
    "Partition",
    "calibrated_integer_ranges",
    "integer_width",
    "partition",
]


@dataclass(frozen=True, slots=True)
class Partition:
    """Who computes what (see the module docstring). Each tuple is in topological order."""

    client_before: tuple[ValueId, ...]
    encrypted_inputs: tuple[ValueId, ...]  # the tfhe.quantize values the client encrypts
    server: tuple[ValueId, ...]
    encrypted_outputs: tuple[ValueId, ...]  # server values the client decrypts
    client_after: tuple[ValueId, ...]


def partition(module: Module) -> Partition:
    graph = module.graph
    order = graph.topological_order()
    inputs: list[ValueId] = []
    encrypted: set[ValueId] = set()  # the encrypted inputs and every server value
    after: set[ValueId] = set()
    for value in order:
        op = graph.node(value).op
        operands = graph.operands(value)
        if any(o in after for o in operands):
            after.add(value)
        elif isinstance(op, QuantizeOp):
            inputs.append(value)
            encrypted.add(value)
        elif any(o in encrypted for o in operands):
            (after if isinstance(op, DequantizeOp) else encrypted).add(value)
    decrypted = {o for v in after for o in graph.operands(v) if o in encrypted}
    decrypted |= {v for _, v in module.function.outputs if v in encrypted}
    server = encrypted - set(inputs)
    return Partition(
        tuple(v for v in order if v not in encrypted and v not in after),
        tuple(inputs),
        tuple(v for v in order if v in server),
        tuple(v for v in order if v in decrypted),
        tuple(v for v in order if v in after),
    )


@register_pass
@dataclass(frozen=True, slots=True)
class LowerToInteger(Pass):
    name = "lower-to-integer"
    kind = PassKind.TRANSFORM
    # Lookups are tabulated on at most 2^table_bits points (see the module docstring).
    table_bits: int = 20
    # The bits of a Softmax's integers between layers; 0: the next layer's input bits.
    softmax_bits: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.table_bits <= 24:
            raise FhecError(f"lower-to-integer: table_bits={self.table_bits} must be 8 to 24")
        if self.softmax_bits != 0 and not 2 <= self.softmax_bits <= MAX_BITS:
            raise FhecError(
                f"lower-to-integer: softmax_bits={self.softmax_bits} is out of range",
                hint=f"choose 2 to {MAX_BITS} bits, or 0 for the next layer's input bits",
            )

    def run(self, module: Module, context: PassContext) -> None:
        graph = module.graph
        lower_layers(module)
        if not any(isinstance(graph.node(v).op, QuantizeOp) for v in graph):
            raise CompileError(
                "the model has no layer to compute on encrypted data",
                graph.node(module.function.outputs[0][1]).location,
                hint="the TFHE backend runs Gemm / MatMul layers with constant weights, "
                "fed by an encrypted input",
            )
        lower_softmaxes(module, context.calibration, self.softmax_bits, self.table_bits)
        ranges = calibrated_integer_ranges(module, context.calibration)
        fuse_lookups(module, ranges, self.table_bits)
        _remove_dead(module)
        _check_server(module)


def _check_server(module: Module) -> None:
    graph = module.graph
    for value in partition(module).server:
        op = graph.node(value).op
        if not isinstance(op, SERVER_OPS):
            raise InternalCompilerError(
                f"{op.name} at {graph.node(value).location.describe()} is left on encrypted "
                "integers",
                "lower-to-integer",
            )


def _remove_dead(module: Module) -> None:
    graph = module.graph
    live: set[ValueId] = set()
    for _, value in module.function.outputs:
        live |= {value} | graph.ancestors(value)
    for value in reversed(graph.topological_order()):
        if value not in live and not isinstance(graph.node(value).op, InputOp):
            graph.remove(value)
