"""The IR container: one function of typed SSA values on a networkx MultiDiGraph.

Each graph node is one op producing one value; an edge `u -> v` with key `k`
says that value `u` is operand `k` of `v`, so operand order lives on the edges.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import networkx as nx

from fhec.ir.annotation import Annotation
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.types import TensorType

ValueId = int
AnnotationCls = TypeVar("AnnotationCls", bound=Annotation)


@dataclass(frozen=True, slots=True)
class Node:
    """One op application: the op, its result type, its ONNX location, its annotations."""

    op: Op
    type: TensorType
    location: Location
    annotations: tuple[Annotation, ...] = ()

    def annotation(self, cls: builtins.type[AnnotationCls]) -> AnnotationCls | None:
        for item in self.annotations:
            if isinstance(item, cls):
                return item
        return None

    def with_annotation(self, annotation: Annotation) -> Node:
        kept = tuple(a for a in self.annotations if a.key != annotation.key)
        merged = tuple(sorted((*kept, annotation), key=lambda a: a.key))
        return replace(self, annotations=merged)

    def without_annotation(self, key: str) -> Node:
        return replace(self, annotations=tuple(a for a in self.annotations if a.key != key))


class Graph:
    """A dataflow graph of `Node`s; value ids are stable for the life of the graph."""

    def __init__(self) -> None:
        self._g: nx.MultiDiGraph = nx.MultiDiGraph()
        self._next_id = 0
        # Derived from the edges, kept because passes ask for them constantly; every
        # structural change below clears or updates them.
        self._order: list[ValueId] | None = None
        self._operands: dict[ValueId, tuple[ValueId, ...]] = {}

    # -- building -------------------------------------------------------------
    def add(
        self,
        op: Op,
        operands: Sequence[ValueId],
        type: TensorType,
        location: Location,
        annotations: tuple[Annotation, ...] = (),
    ) -> ValueId:
        for operand in operands:
            if operand not in self._g:
                raise KeyError(f"operand %{operand} is not in the graph")
        value = self._next_id
        self._next_id += 1
        self._g.add_node(value, node=Node(op, type, location, annotations))
        for index, operand in enumerate(operands):
            self._g.add_edge(operand, value, key=index)
        self._operands[value] = tuple(operands)
        self._order = None
        return value

    def set_node(self, value: ValueId, node: Node) -> None:
        self._g.nodes[value]["node"] = node

    def set_operands(self, value: ValueId, operands: Sequence[ValueId]) -> None:
        for source, _, key in list(self._g.in_edges(value, keys=True)):
            self._g.remove_edge(source, value, key=key)
        for index, operand in enumerate(operands):
            self._g.add_edge(operand, value, key=index)
        self._operands[value] = tuple(operands)
        self._order = None

    def replace_uses(self, old: ValueId, new: ValueId) -> None:
        """Every user of `old` uses `new` instead, in the same operand positions."""
        for _, user, key in list(self._g.out_edges(old, keys=True)):
            self._g.remove_edge(old, user, key=key)
            self._g.add_edge(new, user, key=key)
            slots = list(self._operands[user])
            slots[key] = new
            self._operands[user] = tuple(slots)
        self._order = None

    def remove(self, value: ValueId) -> None:
        if self._g.out_degree(value):
            raise ValueError(f"%{value} still has users")
        self._g.remove_node(value)
        del self._operands[value]
        self._order = None

    # -- reading --------------------------------------------------------------
    def node(self, value: ValueId) -> Node:
        node: Node = self._g.nodes[value]["node"]
        return node

    def operands(self, value: ValueId) -> tuple[ValueId, ...]:
        return self._operands[value]

    def operand_keys(self, value: ValueId) -> list[int]:
        return sorted(key for _, _, key in self._g.in_edges(value, keys=True))

    def users(self, value: ValueId) -> list[tuple[ValueId, int]]:
        """(user, operand index) for every use of `value`."""
        return sorted((user, key) for _, user, key in self._g.out_edges(value, keys=True))

    def topological_order(self) -> list[ValueId]:
        """Deterministic: ties broken by value id (creation order)."""
        if self._order is None:
            self._order = list(nx.lexicographical_topological_sort(self._g, key=lambda v: v))
        return list(self._order)

    def is_acyclic(self) -> bool:
        return bool(nx.is_directed_acyclic_graph(self._g))

    def ancestors(self, value: ValueId) -> set[ValueId]:
        return set(nx.ancestors(self._g, value))

    def __contains__(self, value: object) -> bool:
        return value in self._g

    def __len__(self) -> int:
        return int(self._g.number_of_nodes())

    def __iter__(self) -> Iterator[ValueId]:
        return iter(self.topological_order())

    def copy(self) -> Graph:
        other = Graph()
        other._g = self._g.copy()
        other._next_id = self._next_id
        other._order = self._order
        other._operands = dict(self._operands)
        return other


@dataclass(slots=True, eq=False)
class Function:
    """The one function of a module: a graph plus its named outputs, in order."""

    name: str
    graph: Graph
    outputs: list[tuple[str, ValueId]]

    @property
    def inputs(self) -> list[ValueId]:
        """The `func.input` values, in order (topological order keeps creation order)."""
        from fhec.ir.ops.core import InputOp

        return [v for v in self.graph if isinstance(self.graph.node(v).op, InputOp)]

    def input_named(self, name: str) -> ValueId:
        from fhec.ir.ops.core import InputOp

        for value in self.inputs:
            op = self.graph.node(value).op
            assert isinstance(op, InputOp)
            if op.input_name == name:
                return value
        raise KeyError(name)

    def replace_uses(self, old: ValueId, new: ValueId) -> None:
        """Redirect every use of `old`, outputs included, to `new`."""
        self.graph.replace_uses(old, new)
        self.outputs = [(name, new if value == old else value) for name, value in self.outputs]

    def canonical(self) -> tuple[object, ...]:
        """A structural key independent of value ids: equal iff the functions print alike."""
        order = self.graph.topological_order()
        position = {value: index for index, value in enumerate(order)}
        nodes = tuple(
            (
                self.graph.node(v),
                tuple(position[o] for o in self.graph.operands(v)),
            )
            for v in order
        )
        outputs = tuple((name, position[value]) for name, value in self.outputs)
        return (self.name, nodes, outputs)

    def copy(self) -> Function:
        return Function(self.name, self.graph.copy(), list(self.outputs))


@dataclass(slots=True, eq=False)
class Module:
    """A compilation unit: one function (DESIGN.md: a module holds one function)."""

    function: Function

    @property
    def graph(self) -> Graph:
        return self.function.graph

    def copy(self) -> Module:
        return Module(self.function.copy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Module):
            return NotImplemented
        return self.function.canonical() == other.function.canonical()

    def __hash__(self) -> int:
        return hash(self.function.canonical())

    def __str__(self) -> str:
        from fhec.ir.printer import print_module

        return print_module(self)
