"""The verifier catches each kind of malformed module and names the pass."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fhec.ir import DType, InternalCompilerError, Location, Module, TensorType
from fhec.ir.graph import Function, Graph
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, ReluOp
from fhec.ir.verifier import verify

T = TensorType((2,), DType.F32, secret=True)


def _module() -> tuple[Module, list[int]]:
    graph = Graph()
    x = graph.add(InputOp("x", T), [], T, Location("x", "Input"))
    c = ConstantOp.of(np.ones(2, dtype=np.float32))
    k = graph.add(c, [], c.value.type, Location("k", "Initializer"))
    s = graph.add(AddOp(), [x, k], T, Location("add", "Add"))
    r = graph.add(ReluOp(), [s], T, Location("relu", "Relu"))
    return Module(Function("main", graph, [("y", r)])), [x, k, s, r]


def test_a_well_formed_module_verifies() -> None:
    module, _ = _module()
    verify(module)


def test_wrong_result_type_names_the_pass_and_node() -> None:
    module, (_, _, s, _) = _module()
    node = module.graph.node(s)
    module.graph.set_node(s, replace(node, type=TensorType((3,), DType.F32, True)))
    with pytest.raises(InternalCompilerError, match=r"\[my-pass\].*node 'add' \(Add\)"):
        verify(module, "my-pass")


def test_lost_secrecy_is_a_type_error() -> None:
    module, (_, _, s, _) = _module()
    node = module.graph.node(s)
    module.graph.set_node(s, replace(node, type=T.with_secret(False)))
    with pytest.raises(InternalCompilerError, match="type rule gives"):
        verify(module)


def test_cycle_is_caught() -> None:
    module, (_, _, s, r) = _module()
    module.graph.set_operands(s, [r, r])
    with pytest.raises(InternalCompilerError, match="cycle"):
        verify(module)


def test_wrong_operand_count_is_caught() -> None:
    module, (x, _, _, r) = _module()
    module.graph.set_operands(r, [x, x])
    with pytest.raises(InternalCompilerError, match="2 operands"):
        verify(module)


def test_secret_constant_is_caught() -> None:
    module, (_, k, _, _) = _module()
    node = module.graph.node(k)
    module.graph.set_node(k, replace(node, type=node.type.with_secret(True)))
    with pytest.raises(InternalCompilerError):
        verify(module)


def test_duplicate_input_names_are_caught() -> None:
    module, _ = _module()
    module.graph.add(InputOp("x", T), [], T, Location("x2", "Input"))
    with pytest.raises(InternalCompilerError, match="'x' twice"):
        verify(module)
