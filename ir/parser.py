"""Parse the IR text form back into a Module: `parse(print(m)) == m`."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import lark

from fhec.ir.annotation import ANNOTATION_REGISTRY, Annotation
from fhec.ir.attributes import coerce, field_hints, parse_dense
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.location import Location
from fhec.ir.op import OP_REGISTRY, Op
from fhec.ir.types import DType, TensorType


class IRParseError(ValueError):
    """The text is not valid IR; the message gives the line and what was wrong."""


@cache
def _parser() -> lark.Lark:
    import fhec.ir.ops  # noqa: F401  (fills the op registry)

    grammar = resources.files("fhec.ir").joinpath("grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=True)


def parse_module(text: str) -> Module:
    try:
        tree = _parser().parse(text)
        return _Builder().module(tree)
    except lark.exceptions.UnexpectedInput as exc:
        summary = str(exc).strip().splitlines()[0]
        raise IRParseError(f"line {exc.line}, column {exc.column}: {summary}") from None
    except lark.exceptions.VisitError as exc:
        raise IRParseError(f"{exc.orig_exc}") from None


class _Values(lark.Transformer[Any, Any]):
    """Attribute values, types and locations to Python values."""

    def true(self, _: list[Any]) -> bool:
        return True

    def false(self, _: list[Any]) -> bool:
        return False

    def none(self, _: list[Any]) -> None:
        return None

    def float_(self, items: list[lark.Token]) -> float:
        return float(items[0])

    def int_(self, items: list[lark.Token]) -> int:
        return int(items[0])

    def string(self, items: list[lark.Token]) -> str:
        return str(json.loads(items[0]))

    def list_(self, items: list[Any]) -> list[Any]:
        return [] if items == [None] else items

    def dense(self, items: list[lark.Token]) -> Any:
        return parse_dense(str(items[0]), json.loads(items[1]))

    def secret(self, _: list[Any]) -> bool:
        return True

    def tensor_type(self, items: list[Any]) -> TensorType:
        *dims, dtype = str(items[0]).split("x")
        return TensorType(tuple(int(d) for d in dims), DType(dtype), bool(items[1]))

    def field(self, items: list[Any]) -> tuple[str, Any]:
        return (str(items[0]), items[1])

    def fields(self, items: list[Any]) -> dict[str, Any]:
        return dict(item for item in items if item is not None)

    def loc(self, items: list[lark.Token]) -> Location:
        return Location(json.loads(items[0]), json.loads(items[1]))


class _Builder:
    def __init__(self) -> None:
        self.graph = Graph()
        self.ids: dict[str, ValueId] = {}

    def module(self, tree: lark.Tree[Any]) -> Module:
        tree = _Values().transform(tree)
        function_tree = tree.children[0]
        name = str(function_tree.children[0])
        outputs: list[tuple[str, ValueId]] = []
        for child in function_tree.children[1:]:
            if child.data == "node":
                self.node(child)
            else:
                outputs = [self.output(o) for o in child.children if o is not None]
        return Module(Function(name, self.graph, outputs))

    def node(self, tree: lark.Tree[Any]) -> None:
        value: Any
        opname: Any
        value, opname, *rest = tree.children
        operand_tokens: list[Any] = [t for t in rest if _is_value_token(t)]
        others: list[Any] = [t for t in rest if t is not None and not _is_value_token(t)]
        attributes: dict[str, Any] = {}
        if others and isinstance(others[0], dict):
            attributes = others.pop(0)
        result_type, *annotation_trees, location = others
        op = self.op(str(opname), attributes, value.line)
        operands = [self.lookup(t) for t in operand_tokens]
        if not op.accepts_operand_count(len(operands)):
            raise IRParseError(f"line {value.line}: {op.name} takes {op.arity} operands")
        annotations = tuple(self.annotation(a, value.line) for a in annotation_trees)
        if str(value) in self.ids:
            raise IRParseError(f"line {value.line}: {value} is defined twice")
        self.ids[str(value)] = self.graph.add(op, operands, result_type, location, annotations)

    def lookup(self, token: lark.Token) -> ValueId:
        if str(token) not in self.ids:
            raise IRParseError(f"line {token.line}: {token} is used before it is defined")
        return self.ids[str(token)]

    def output(self, tree: lark.Tree[Any]) -> tuple[str, ValueId]:
        token: Any
        name: Any
        token, name = tree.children
        return (str(json.loads(name)), self.lookup(token))

    def op(self, opname: str, attributes: dict[str, Any], line: int) -> Op:
        cls = OP_REGISTRY.get(opname)
        if cls is None:
            raise IRParseError(f"line {line}: unknown op {opname!r}")
        op: Op = _instantiate(cls, attributes, line)
        return op

    def annotation(self, tree: lark.Tree[Any], line: int) -> Annotation:
        key, attributes = str(tree.children[0]), tree.children[1]
        cls = ANNOTATION_REGISTRY.get(key)
        if cls is None:
            raise IRParseError(f"line {line}: unknown annotation #{key}")
        annotation: Annotation = _instantiate(cls, attributes, line)  # type: ignore[arg-type]
        return annotation


def _is_value_token(item: object) -> bool:
    return isinstance(item, lark.Token) and item.type == "VALUE"


def _instantiate(cls: type[Any], attributes: dict[str, Any], line: int) -> Any:
    hints = field_hints(cls)
    unknown = set(attributes) - set(hints)
    missing = set(hints) - set(attributes)
    if unknown or missing:
        raise IRParseError(
            f"line {line}: {cls.__name__} expects fields {sorted(hints)}, "
            f"unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    try:
        values = {key: coerce(attributes[key], hint) for key, hint in hints.items()}
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise IRParseError(f"line {line}: {cls.__name__}: {exc}") from None
