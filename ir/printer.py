"""The generic text form: one syntax for every op, derived from its fields.

    module {  # (long lines wrapped here)
      func @main {
        %0 = func.input() {input_name = "x", type = tensor<1x4xf32, secret>}
             : tensor<1x4xf32, secret> loc("x", "Input")
        %1 = nn.relu(%0) : tensor<1x4xf32, secret> #range{lo = 0.0, hi = 3.5} loc("relu0", "Relu")
        return %1 as "y"
      }
    }
"""

from __future__ import annotations

import json

from fhec.ir.attributes import format_value
from fhec.ir.graph import Module, Node, ValueId


def print_module(module: Module, *, elide_constants_over: int | None = None) -> str:
    """Text of `module`; with `elide_constants_over`, larger constants print as "..."
    (readable, but no longer parseable)."""
    function = module.function
    graph = function.graph
    order = graph.topological_order()
    names = {value: f"%{index}" for index, value in enumerate(order)}
    lines = ["module {", f"  func @{function.name} {{"]
    for value in order:
        operands = ", ".join(names[o] for o in graph.operands(value))
        lines.append(
            f"    {names[value]} = "
            + format_node(graph.node(value), operands, elide_constants_over)
        )
    outputs = ", ".join(f"{names[v]} as {json.dumps(n)}" for n, v in function.outputs)
    lines += [f"    return {outputs}", "  }", "}", ""]
    return "\n".join(lines)


def format_node(node: Node, operands: str, elide_constants_over: int | None = None) -> str:
    text = f"{node.op.name}({operands})"
    attributes = node.op.attributes()
    if attributes:
        text += " {" + format_fields(attributes, elide_constants_over) + "}"
    text += f" : {node.type}"
    for annotation in node.annotations:
        text += f" #{annotation.key}{{{format_fields(annotation.attributes())}}}"
    loc = node.location
    return text + f" loc({json.dumps(loc.name)}, {json.dumps(loc.op_type)})"


def format_fields(values: dict[str, object], elide_constants_over: int | None = None) -> str:
    return ", ".join(
        f"{key} = {format_value(value, elide_over=elide_constants_over)}"
        for key, value in values.items()
    )


def value_names(module: Module) -> dict[ValueId, str]:
    """The `%N` name each value gets in the printed text."""
    order = module.graph.topological_order()
    return {value: f"%{index}" for index, value in enumerate(order)}
