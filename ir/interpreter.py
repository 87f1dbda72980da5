"""Plaintext evaluation of a module through each op's `evaluate`: the oracle for every backend,
and the engine of constant folding and calibration (passes call it; it lives in ir/ so that
imports keep pointing one way)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fhec.ir.errors import InputError, InternalCompilerError
from fhec.ir.graph import Module, ValueId
from fhec.ir.ops.core import InputOp


def evaluate_all(module: Module, inputs: Mapping[str, np.ndarray]) -> dict[ValueId, np.ndarray]:
    """The value of every node, for inputs that match the function's input types exactly."""
    graph = module.graph
    values: dict[ValueId, np.ndarray] = {}
    for value in graph.topological_order():
        node = graph.node(value)
        if isinstance(node.op, InputOp):
            values[value] = _bind_input(node.op, inputs)
            continue
        operands = [values[o] for o in graph.operands(value)]
        result = np.asarray(node.op.evaluate(operands))
        if result.shape != node.type.shape:
            raise InternalCompilerError(
                f"{node.op.name} at {node.location.describe()} computed shape {result.shape}, "
                f"its type says {node.type.shape}",
                "interpreter",
            )
        values[value] = result.astype(node.type.dtype.numpy, copy=False)
    return values


def evaluate(module: Module, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The function's outputs by name."""
    values = evaluate_all(module, inputs)
    return {name: values[value] for name, value in module.function.outputs}


def _bind_input(op: InputOp, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if op.input_name not in inputs:
        raise InputError(f"missing input {op.input_name!r}", hint=f"expected {op.type}")
    array = np.asarray(inputs[op.input_name])
    if array.shape != op.type.shape:
        raise InputError(
            f"input {op.input_name!r} has shape {array.shape}, expected {op.type.shape}"
        )
    return array.astype(op.type.dtype.numpy, copy=False)
