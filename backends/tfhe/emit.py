"""Emission: the server region of an integer module as a concrete-python function,
compiled with the quantized calibration inputset.

Each server op maps to one concrete construct: `linalg.matmul` by clear weights to
`x @ W`, `linalg.conv` to `fhe.conv`, `tensor.reshape` to `np.reshape`, `tensor.pad`
to an assignment into an encrypted tensor of the fill, `tfhe.round` to
`fhe.round_bit_pattern`, `tfhe.lookup` to `fhe.univariate` of its own `evaluate`
(concrete tabulates it on every integer the input's width holds, one table per
distinct channel). Concrete assigns widths from the same inputset the IR's `#bits`
come from, so its report and the IR agree.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fhec.backends.tfhe.codec import Codec
from fhec.backends.tfhe.config import TfheConfig
from fhec.ir.errors import CompileError, InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.elementwise import AddOp, SubOp
from fhec.ir.ops.linalg import ConvOp, MatMulOp
from fhec.ir.ops.shape import PadOp, ReshapeOp
from fhec.ir.ops.tfhe import BitWidth, LookupOp, RoundOp
from fhec.passes.annotate_bit_widths import bit_widths

# Statistics of concrete's compiled program copied into the compile report.
STATISTICS = (
    "programmable_bootstrap_count",
    "key_switch_count",
    "packing_key_switch_count",
    "clear_addition_count",
    "encrypted_addition_count",
    "clear_multiplication_count",
    "encrypted_negation_count",
    "size_of_secret_keys",
    "size_of_bootstrap_keys",
    "size_of_keyswitch_keys",
    "size_of_inputs",
    "size_of_outputs",
    "p_error",
    "global_p_error",
    "complexity",
)


@dataclass(frozen=True, slots=True)
class Emitted:
    mlir: str
    statistics: dict[str, object]


def emit(
    module: Module, codec: Codec, samples: Sequence[dict[str, np.ndarray]], config: TfheConfig
) -> Emitted:
    """Compile the server region with concrete; CompileErrors name the layer at fault."""
    from concrete import fhe

    function, names = server_function(module, codec)
    inputset = [_arguments(codec.encode(sample).arguments) for sample in samples]
    if not inputset:
        raise CompileError(
            "the tfhe backend needs calibration data to compile its circuit",
            hint="pass calibration=... (fhec compile --calibration DATA.npz)",
        )
    started = time.perf_counter()
    try:
        circuit = fhe.Compiler(function, {n: "encrypted" for n in names}).compile(
            inputset, config.concrete()
        )
    except RuntimeError as exc:
        raise _compile_error(module, exc) from None
    statistics = {key: _plain(circuit.statistics[key]) for key in STATISTICS}
    statistics["max_integer_bit_width"] = int(circuit.graph.maximum_integer_bit_width())
    statistics["compile_seconds"] = round(time.perf_counter() - started, 3)
    return Emitted(circuit.mlir, statistics)


def server_function(module: Module, codec: Codec) -> tuple[Callable[..., Any], list[str]]:
    """A function of one keyword argument per encrypted input, for concrete to trace."""
    graph = module.graph
    split = codec.split
    names = [f"x{index}" for index in range(len(split.encrypted_inputs))]

    def main(*positional: Any, **arguments: Any) -> Any:
        arguments.update(zip(names, positional, strict=False))
        values: dict[ValueId, Any] = {
            value: arguments[name]
            for value, name in zip(split.encrypted_inputs, names, strict=True)
        }
        for value in split.server:
            values[value] = _hinted(graph, value, _emit_op(graph, value, values))
        results = tuple(values[value] for value in split.encrypted_outputs)
        return results if len(results) > 1 else results[0]

    parameters = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    main.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return main, names


def _emit_op(graph: Graph, value: ValueId, values: dict[ValueId, Any]) -> Any:
    from concrete import fhe

    op = graph.node(value).op
    operands = [_operand(graph, o, values) for o in graph.operands(value)]
    if isinstance(op, MatMulOp):
        return operands[0] @ operands[1]
    if isinstance(op, AddOp):  # a max pool's a + relu(b - a)
        return operands[0] + operands[1]
    if isinstance(op, SubOp):
        return operands[0] - operands[1]
    if isinstance(op, ConvOp):
        return fhe.conv(
            operands[0],
            operands[1],
            pads=op.pads,
            strides=op.strides,
            dilations=op.dilations,
            group=op.group,
        )
    if isinstance(op, ReshapeOp):
        return np.reshape(operands[0], op.shape)
    if isinstance(op, PadOp):  # an encrypted tensor of the fill, the input assigned inside
        padded = fhe.zeros(graph.node(value).type.shape) + int(op.value)
        half = len(op.pads) // 2
        padded[
            tuple(slice(b, b + d) for b, d in zip(op.pads[:half], operands[0].shape, strict=True))
        ] = operands[0]
        return padded
    if isinstance(op, RoundOp):
        # The width annotate-bit-widths gave the rounded value holds its rounded values
        # too: hinting it on both sides keeps concrete from seeing an overflow (which
        # its per-channel lookups after approximate rounding do not handle).
        width = _width(graph, graph.operands(value)[0])
        exactness = fhe.Exactness.APPROXIMATE if op.approximate else fhe.Exactness.EXACT
        source = fhe.hint(operands[0], bit_width=width)
        rounded = fhe.round_bit_pattern(source, lsbs_to_remove=op.lsbs, exactness=exactness)
        return fhe.hint(rounded, bit_width=width)
    if isinstance(op, LookupOp):
        return fhe.univariate(_table(op))(operands[0])
    raise InternalCompilerError(f"{op.name} has no concrete emission", "tfhe")


def _hinted(graph: Graph, value: ValueId, traced: Any) -> Any:
    """The traced value at its `#bits` width: the one concrete infers from the inputset,
    except where a lowering recorded wider bounds by construction (a softmax's sums,
    which calibration may not reach: concrete would overflow on them)."""
    from concrete import fhe

    width = graph.node(value).annotation(BitWidth)
    if width is None or isinstance(graph.node(value).op, RoundOp):  # rounding hints its own
        return traced
    return fhe.hint(traced, bit_width=width.width)


def _width(graph: Graph, value: ValueId) -> int:
    width = graph.node(value).annotation(BitWidth)
    if width is None:
        raise InternalCompilerError("a rounded value has no #bits: run annotate-bit-widths", "tfhe")
    return width.width


def _operand(graph: Graph, value: ValueId, values: dict[ValueId, Any]) -> Any:
    if value in values:
        return values[value]
    op = graph.node(value).op
    if isinstance(op, ConstantOp):
        return op.value.array.astype(np.int64)
    raise InternalCompilerError(f"{op.name} feeds the server but is not computed there", "tfhe")


def _table(op: LookupOp) -> Callable[[np.ndarray], np.ndarray]:
    def lookup(x: np.ndarray) -> np.ndarray:
        return op.evaluate([x])

    return lookup


def _arguments(arguments: list[np.ndarray]) -> Any:
    return tuple(arguments) if len(arguments) > 1 else arguments[0]


def _plain(value: object) -> object:
    """JSON-able numbers (concrete returns numpy scalars at times)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compile_error(module: Module, exc: RuntimeError) -> CompileError:
    """Concrete found no parameters (or refused a width): name the widest value."""
    graph = module.graph
    widths = bit_widths(module)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not widths:
        return CompileError(f"concrete cannot compile this circuit: {reason}")
    widest = max(widths, key=lambda v: widths[v].width)
    width = widths[widest]
    return CompileError(
        f"concrete cannot compile this circuit ({reason}); its widest value is this layer's "
        f"{width.width}-bit integer",
        graph.node(widest).location,
        hint="quantize with fewer bits (quantize-tfhe{bits=...}) or round the accumulators "
        "(round-accumulators{bits=...})",
    )


__all__ = ["STATISTICS", "Emitted", "emit", "server_function"]
