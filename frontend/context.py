"""What a converter sees: the ONNX node, its operands as IR values, and a builder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper

from fhec.ir.errors import CompileError
from fhec.ir.graph import Graph, ValueId
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops.core import ConstantOp
from fhec.ir.types import TensorType


class ConversionContext:
    """The builder converters use. Every node it emits carries the ONNX node's location."""

    def __init__(
        self,
        graph: Graph,
        values: dict[str, ValueId],
        opsets: Mapping[str, int],
        used_names: frozenset[str] = frozenset(),
    ):
        self.graph = graph
        self.values = values
        self.opsets = dict(opsets)
        # Names some node reads or the graph returns: which optional outputs matter.
        self.used_names = used_names
        self.node: onnx.NodeProto = onnx.NodeProto()
        self.location = Location("", "")
        self._attributes: dict[str, Any] = {}

    def begin(self, node: onnx.NodeProto, index: int) -> None:
        self.node = node
        self.location = Location(node.name or f"{node.op_type}_{index}", node.op_type)
        self._attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # -- operands -----------------------------------------------------------
    @property
    def input_count(self) -> int:
        """Number of inputs given, trailing empty (omitted optional) inputs excluded."""
        names = list(self.node.input)
        while names and not names[-1]:
            names.pop()
        return len(names)

    def input(self, index: int) -> ValueId:
        value = self.optional_input(index)
        if value is None:
            raise self.error(f"input {index} is required but missing")
        return value

    def optional_input(self, index: int) -> ValueId | None:
        if index >= len(self.node.input) or not self.node.input[index]:
            return None
        name = self.node.input[index]
        if name not in self.values:
            raise self.error(f"input {name!r} is not produced by any earlier node")
        return self.values[name]

    def inputs(self) -> list[ValueId]:
        return [self.input(i) for i in range(self.input_count)]

    def output_used(self, index: int) -> bool:
        """Whether output `index` of the node is read by a later node or is a graph output."""
        outputs = self.node.output
        return index < len(outputs) and bool(outputs[index]) and outputs[index] in self.used_names

    def type_of(self, value: ValueId) -> TensorType:
        return self.graph.node(value).type

    def constant_value(self, value: ValueId | None) -> np.ndarray | None:
        """The value of a constant operand (initializer or Constant node), else None."""
        if value is None:
            return None
        op = self.graph.node(value).op
        return op.value.array if isinstance(op, ConstantOp) else None

    def require_constant(self, index: int, what: str) -> np.ndarray | None:
        """Input `index` as a numpy array; None when omitted; an error when not constant."""
        value = self.optional_input(index)
        if value is None:
            return None
        array = self.constant_value(value)
        if array is None:
            raise self.error(
                f"{what} (input {index}, {self.node.input[index]!r}) must be a constant",
                hint="fold it into an initializer before export, or export with constant folding",
            )
        return array

    # -- attributes ---------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        value = self._attributes.get(name, default)
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, list):
            return [v.decode() if isinstance(v, bytes) else v for v in value]
        return value

    def has_attr(self, name: str) -> bool:
        return name in self._attributes

    def reject_attr(self, name: str, allowed: object, why: str = "") -> None:
        """CompileError when attribute `name` is set to something other than `allowed`."""
        if name in self._attributes and self.attr(name) != allowed:
            raise self.error(
                f"attribute {name}={self.attr(name)!r} is not supported{': ' + why if why else ''}",
                hint=f"only {name}={allowed!r} is",
            )

    # -- building -----------------------------------------------------------
    def emit(self, op: Op, *operands: ValueId) -> ValueId:
        """Add `op` applied to `operands`; its type comes from the op's type rule."""
        types = [self.type_of(v) for v in operands]
        try:
            result_type = op.infer(types)
        except ValueError as exc:
            shapes = ", ".join(str(t) for t in types)
            raise self.error(f"{exc} (operands: {shapes})") from None
        return self.graph.add(op, operands, result_type, self.location)

    def constant(self, array: np.ndarray | float | int) -> ValueId:
        return self.emit(ConstantOp.of(np.asarray(array)))

    def error(self, message: str, *, hint: str | None = None) -> CompileError:
        return CompileError(message, self.location, hint=hint)
