"""A small driver for tables of rewrite rules (tinygrad style): match, replace, repeat.

A `Rule` names the op it applies to and a function from a `Match` to a replacement:
an existing value (`x + 0 -> x`), a `Build` (the matched node becomes `op(operands)`,
keeping its value id, location and annotations), or None (no match). The driver keeps
a replacement only when the result type (shape, dtype, secrecy) stays identical, so
rules read like the math and cannot change what a value is; it erases the nodes a
rewrite left without users, and sweeps until no rule applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeAlias, TypeVar

import numpy as np

from fhec.ir.graph import Function, Graph, Node, ValueId
from fhec.ir.interval import Interval
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp, InputOp


@dataclass(frozen=True, slots=True)
class Build:
    """Replace the matched node, in place, by `op` applied to `operands`."""

    op: Op
    operands: tuple[ValueId, ...]


Replacement: TypeAlias = ValueId | Build | None
OpT = TypeVar("OpT", bound=Op)


@dataclass(slots=True)
class Match:
    """What a rule sees: the matched value, its operands, and helpers to read constants."""

    function: Function
    value: ValueId
    created: list[ValueId] = field(default_factory=list)

    @property
    def graph(self) -> Graph:
        return self.function.graph

    @property
    def op(self) -> Op:
        return self.graph.node(self.value).op

    def op_as(self, cls: type[OpT]) -> OpT:
        """The matched op as the class its rule was registered for."""
        op = self.op
        assert isinstance(op, cls)
        return op

    @property
    def operands(self) -> tuple[ValueId, ...]:
        return self.graph.operands(self.value)

    def operand(self, index: int) -> ValueId:
        return self.operands[index]

    @property
    def x(self) -> ValueId:
        return self.operand(0)

    @property
    def y(self) -> ValueId:
        return self.operand(1)

    def producer(self, index: int) -> Op:
        """The op computing operand `index`."""
        return self.graph.node(self.operand(index)).op

    def from_op(self, index: int, cls: type[Op]) -> bool:
        """Operand `index` is computed by an op of class `cls`."""
        return isinstance(self.producer(index), cls)

    def inner(self, index: int, inner_index: int = 0) -> ValueId:
        """Operand `inner_index` of the op computing operand `index` (x in f(g(x)))."""
        return self.graph.operands(self.operand(index))[inner_index]

    def constant(self, index: int) -> np.ndarray | None:
        """Operand `index`'s value when it is a `tensor.constant`, else None."""
        op = self.producer(index)
        return op.value.array if isinstance(op, ConstantOp) else None

    def is_splat(self, index: int, number: float) -> bool:
        """Operand `index` is a constant whose every element equals `number`."""
        array = self.constant(index)
        return array is not None and bool(np.all(array == number))

    def new_constant(self, array: np.ndarray) -> ValueId:
        """A new `tensor.constant` carrying the matched node's location."""
        value = add_constant(self.graph, array, self.graph.node(self.value).location)
        self.created.append(value)
        return value


@dataclass(frozen=True, slots=True)
class Rule:
    """Rewrite nodes of op class `op` with `rewrite` (None when the rule does not match)."""

    op: type[Op]
    rewrite: Callable[[Match], Replacement]


def add_constant(graph: Graph, array: np.ndarray, location: Location) -> ValueId:
    """A new constant node for `array` at `location` (the node it stands in for)."""
    op = ConstantOp.of(np.ascontiguousarray(array))
    return graph.add(op, (), op.infer(()), location)


def operand_bounds(
    graph: Graph, operands: Sequence[ValueId]
) -> tuple[list[Interval], list[np.ndarray | None]] | None:
    """Each operand's interval (a constant's own values, else its #range) and its
    constant array (None when it is not one), as `Op.interval` takes them; None when
    some operand is unbounded."""
    bounds: list[Interval] = []
    constants: list[np.ndarray | None] = []
    for operand in operands:
        producer = graph.node(operand)
        constant = producer.op.value.array if isinstance(producer.op, ConstantOp) else None
        known = Interval.of(constant) if constant is not None else producer.annotation(Interval)
        if known is None:
            return None
        bounds.append(known)
        constants.append(constant)
    return bounds, constants


def rewrite_to_fixpoint(function: Function, rules: Sequence[Rule], *, max_sweeps: int = 100) -> int:
    """Apply `rules` until none applies; returns the number of rewrites made."""
    by_op: dict[type[Op], list[Rule]] = {}
    for rule in rules:
        by_op.setdefault(rule.op, []).append(rule)
    rewrites = 0
    for _ in range(max_sweeps):
        changed = False
        for value in function.graph.topological_order():
            if value in function.graph and _rewrite_node(function, value, by_op):
                changed = True
                rewrites += 1
        if not changed:
            return rewrites
    # Each rule must make progress (fewer nodes or a simpler op); endless change is our bug.
    raise RuntimeError(f"rewrite rules did not reach a fixpoint in {max_sweeps} sweeps")


def _rewrite_node(function: Function, value: ValueId, by_op: dict[type[Op], list[Rule]]) -> bool:
    for rule in by_op.get(type(function.graph.node(value).op), ()):
        match = Match(function, value)
        if apply_replacement(function, value, rule.rewrite(match)):
            return True
        for leftover in match.created:  # constants a rejected rewrite built
            erase_if_dead(function, leftover)
    return False


def apply_replacement(function: Function, value: ValueId, replacement: Replacement) -> bool:
    """Replace `value` if the result type stays identical; True when it did."""
    graph = function.graph
    node = graph.node(value)
    if replacement is None:
        return False
    if isinstance(replacement, Build):
        return _rebuild(function, value, node, replacement)
    if replacement == value or graph.node(replacement).type != node.type:
        return False
    old_operands = graph.operands(value)
    function.replace_uses(value, replacement)
    graph.remove(value)
    for operand in old_operands:
        erase_if_dead(function, operand)
    return True


def _rebuild(function: Function, value: ValueId, node: Node, build: Build) -> bool:
    graph = function.graph
    old_operands = graph.operands(value)
    if build.op == node.op and build.operands == old_operands:
        return False
    try:
        result_type = build.op.infer([graph.node(o).type for o in build.operands])
    except ValueError:
        return False
    if result_type != node.type:
        return False
    graph.set_node(value, replace(node, op=build.op))
    graph.set_operands(value, build.operands)
    for operand in old_operands:
        erase_if_dead(function, operand)
    return True


def erase_if_dead(function: Function, value: ValueId) -> None:
    """Remove `value` if nothing uses it, and then its operands that this left unused.

    Inputs stay (they are the signature) and so do outputs.
    """
    graph = function.graph
    outputs = {v for _, v in function.outputs}
    pending = [value]
    while pending:
        current = pending.pop()
        if current not in graph or current in outputs or graph.users(current):
            continue
        if isinstance(graph.node(current).op, InputOp):
            continue
        pending.extend(graph.operands(current))
        graph.remove(current)
