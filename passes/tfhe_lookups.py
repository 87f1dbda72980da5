"""lower-to-integer, phase 3: one table lookup per requantization (see lower_to_integer.py).

A quantizer of values the server computes becomes one `tfhe.lookup` of the integer
before it: the table applies, in one step, the dequantization (scales, zero points,
bias) and every univariate op up to the quantizer (ReLU, Sigmoid, GELU, arithmetic
with constants, ...). It is tabulated on every integer an accumulator can hold: the
power-of-two range that covers its calibrated values, as concrete's table covers it,
sampled every 2^(width - table_bits) when wider (round-accumulators then reads only
those points).
"""

from __future__ import annotations

import numpy as np

from fhec.ir.errors import CompileError, InternalCompilerError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.common import BinaryElementwise, UnaryElementwise
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.tfhe import DequantizeOp, LookupOp, QuantizeOp
from fhec.passes.tfhe_integers import integer_width

_CHUNK = 1 << 22  # table entries computed per numpy call


def fuse_lookups(module: Module, ranges: dict[ValueId, range], table_bits: int) -> None:
    """Every quantizer of server values, with the univariate ops before it, as one lookup."""
    graph = module.graph
    for value in graph.topological_order():
        if value in graph and _needs_lookup(graph, value, ranges):
            _fuse(module, value, ranges, table_bits)


def _fuse(module: Module, quantize: ValueId, ranges: dict[ValueId, range], table_bits: int) -> None:
    graph = module.graph
    chain = _univariate_chain(graph, graph.operands(quantize)[0], set(ranges))
    source = graph.operands(chain[0])[0]
    chain.append(quantize)
    domain = table_domain(ranges[source], table_bits)
    table = _tabulate(graph, chain, source, domain)
    location = _chain_location(graph, chain)
    lookup = graph.add(table, [source], table.infer([graph.node(source).type]), location)
    module.function.replace_uses(quantize, lookup)
    graph.remove(quantize)


def _needs_lookup(graph: Graph, value: ValueId, ranges: dict[ValueId, range]) -> bool:
    """A quantizer of values computed on the server (not one the client applies)."""
    if not isinstance(graph.node(value).op, QuantizeOp):
        return False
    return any(a in ranges for a in graph.ancestors(value))


def _univariate_chain(graph: Graph, value: ValueId, integers: set[ValueId]) -> list[ValueId]:
    """The nodes from a dequantized server integer to `value`, each a univariate function
    of the one before (its other operands constants); a CompileError naming the first
    node that is not."""
    chain: list[ValueId] = []
    while True:
        node = graph.node(value)
        operands = graph.operands(value)
        if isinstance(node.op, DequantizeOp) and operands[0] in integers:
            return [value, *reversed(chain)]
        variable = [o for o in operands if not isinstance(graph.node(o).op, ConstantOp)]
        elementwise = isinstance(node.op, UnaryElementwise | BinaryElementwise)
        if not elementwise or len(variable) != 1 or graph.node(variable[0]).type != node.type:
            raise CompileError(
                f"{node.op.name} cannot be computed between two encrypted layers",
                node.location,
                hint="between layers the TFHE backend fuses univariate ops (activations, "
                "arithmetic with constants) into one table lookup; this op is not one",
            )
        chain.append(value)
        value = variable[0]


def table_domain(calibrated: range, table_bits: int) -> np.ndarray:
    """The integers concrete's table covers for these calibrated values (a signed or
    unsigned power-of-two range), every 2^k-th one when there are over 2^table_bits."""
    width, signed = integer_width(calibrated)
    start = -(1 << (width - 1)) if signed else 0
    step = 1 << max(0, width - table_bits)
    return np.arange(start, start + (1 << width), step, dtype=np.int64)


def _tabulate(graph: Graph, chain: list[ValueId], source: ValueId, domain: np.ndarray) -> LookupOp:
    rank = graph.node(source).type.rank
    table_shape = _table_shape(graph, chain, rank)
    rows = max(1, _CHUNK // max(1, int(np.prod(table_shape))))
    pieces = []
    for start in range(0, len(domain), rows):
        block = domain[start : start + rows].reshape((-1,) + (1,) * rank)
        out = _evaluate_chain(graph, chain, source, block)
        pieces.append(np.broadcast_to(out, (len(block), *table_shape)))
    outputs = np.concatenate(pieces)
    if all(d == 1 for d in table_shape):
        outputs = outputs.reshape(len(domain))
    return LookupOp.tabulate(domain, outputs)


def _table_shape(graph: Graph, chain: list[ValueId], rank: int) -> tuple[int, ...]:
    """The smallest shape the chain's parameters vary over (one table per channel, say)."""
    shape = [1] * rank
    for value in chain:
        op = graph.node(value).op
        if isinstance(op, DequantizeOp | QuantizeOp) and len(op.scale) > 1:
            shape[op.axis] = len(op.scale)
        for operand in graph.operands(value):
            stored = graph.node(operand).op
            if isinstance(stored, ConstantOp):
                dims = stored.value.shape
                for axis in range(1, len(dims) + 1):
                    shape[-axis] = max(shape[-axis], dims[-axis])
    return tuple(shape)


def _evaluate_chain(
    graph: Graph, chain: list[ValueId], source: ValueId, block: np.ndarray
) -> np.ndarray:
    values: dict[ValueId, np.ndarray] = {source: block}
    for value in chain:
        operands = []
        for operand in graph.operands(value):
            stored = graph.node(operand).op
            operands.append(values[operand] if operand in values else _constant(stored))
        with np.errstate(all="ignore"):  # tables cover values no sample reaches
            values[value] = graph.node(value).op.evaluate(operands)
    return values[chain[-1]]


def _constant(op: Op) -> np.ndarray:
    if not isinstance(op, ConstantOp):
        raise InternalCompilerError(
            f"{op.name} in a lookup chain is not constant", "lower-to-integer"
        )
    return op.value.array


def _chain_location(graph: Graph, chain: list[ValueId]) -> Location:
    """The last op before the quantizer: the activation the lookup stands for."""
    return graph.node(chain[-2]).location
