"""Structural and type checks of a module; run after every pass in tests."""

from __future__ import annotations

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.ops.core import ConstantOp, InputOp


def verify(module: Module, pass_name: str = "") -> None:
    """Raise InternalCompilerError naming `pass_name` if `module` is malformed.

    Checks: acyclic; operands numbered 0..n-1; operand counts match the op's arity;
    each result type equals the op's type rule on its operand types; input names unique;
    outputs exist; constants are never secret.
    """
    graph = module.graph
    if not graph.is_acyclic():
        raise InternalCompilerError("the graph has a cycle", pass_name)
    input_names: set[str] = set()
    for value in graph:
        node = graph.node(value)
        keys = graph.operand_keys(value)
        where = f"%{value} {node.op.name} at {node.location.describe()}"
        if keys != list(range(len(keys))):
            raise InternalCompilerError(f"{where}: operand slots {keys} are not 0..n-1", pass_name)
        if not node.op.accepts_operand_count(len(keys)):
            raise InternalCompilerError(
                f"{where}: {len(keys)} operands, the op takes {node.op.arity}", pass_name
            )
        operand_types = [graph.node(o).type for o in graph.operands(value)]
        try:
            expected = node.op.infer(operand_types)
        except (ValueError, TypeError) as exc:
            raise InternalCompilerError(f"{where}: type rule failed: {exc}", pass_name) from exc
        if expected != node.type:
            raise InternalCompilerError(
                f"{where}: result type {node.type} but the type rule gives {expected}", pass_name
            )
        if isinstance(node.op, InputOp):
            if node.op.input_name in input_names:
                raise InternalCompilerError(f"input {node.op.input_name!r} twice", pass_name)
            input_names.add(node.op.input_name)
        if isinstance(node.op, ConstantOp) and node.type.secret:
            raise InternalCompilerError(f"{where}: a constant cannot be secret", pass_name)
    for name, value in module.function.outputs:
        if value not in graph:
            raise InternalCompilerError(f"output {name!r} refers to a removed value", pass_name)
