"""The text form round-trips: parse(print(m)) == m for hand-built and generated modules."""

from __future__ import annotations

import types
import typing
from enum import StrEnum

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhec.ir import DenseElements, DType, Interval, Location, Module, TensorType
from fhec.ir.attributes import field_hints
from fhec.ir.graph import Function, Graph
from fhec.ir.op import OP_REGISTRY, Op
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.elementwise import AddOp, ReluOp
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.parser import IRParseError, parse_module
from fhec.ir.printer import print_module
from fhec.ir.verifier import verify


def _small_module() -> Module:
    graph = Graph()
    x_type = TensorType((2, 3), DType.F32, secret=True)
    x = graph.add(InputOp("x", x_type), [], x_type, Location("x", "Input"))
    w = ConstantOp.of(np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    w_id = graph.add(w, [], w.value.type, Location("w", "Initializer"))
    gemm = GemmOp(alpha=0.5, trans_b=False)
    y_type = TensorType((2, 4), DType.F32, secret=True)
    y = graph.add(gemm, [x, w_id], y_type, Location("fc/Gemm", "Gemm"))
    r = graph.add(ReluOp(), [y], y_type, Location("relu", "Relu"), (Interval(0.0, 2.5),))
    s = graph.add(AddOp(), [r, r], y_type, Location('odd "name"\n', "Add"))
    return Module(Function("main", graph, [("out", s), ("hidden", r)]))


def test_small_module_round_trips_and_verifies() -> None:
    module = _small_module()
    verify(module)
    text = print_module(module)
    again = parse_module(text)
    assert again == module
    assert print_module(again) == text
    assert '#range{lo = 0.0, hi = 2.5}' in text
    assert 'return %4 as "out", %3 as "hidden"' in text


def test_equality_sees_a_changed_attribute() -> None:
    module = _small_module()
    other = parse_module(print_module(module).replace("alpha = 0.5", "alpha = 0.25"))
    assert other != module


def test_constants_round_trip_bit_exactly() -> None:
    values = np.array([np.nan, -0.0, np.inf, 1e-45, 3.4e38], dtype=np.float32)
    graph = Graph()
    const = ConstantOp.of(values)
    c = graph.add(const, [], const.value.type, Location("c", "Constant"))
    module = Module(Function("main", graph, [("c", c)]))
    parsed = parse_module(print_module(module))
    op = parsed.graph.node(parsed.function.outputs[0][1]).op
    assert isinstance(op, ConstantOp)
    assert op.value.array.tobytes() == values.tobytes()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("module { func @main { return %0 as \"y\" } }", "used before it is defined"),
        ("module { func @main { %0 = nope.op() : tensor<f32> loc(\"\", \"\") return } }",
         "unknown op"),
        ("module { func @main { %0 = nn.relu() : tensor<f32> loc(\"\", \"\") return } }",
         "takes 1 operands"),
        ("module { func @main { %0 = tensor.constant() {value = dense<2xf32, \"0x00\">}"
         " : tensor<2xf32> loc(\"\", \"\") return } }", "bytes"),
        ("module { func @main { %0 = linalg.gemm() {alpha = true} : tensor<f32>"
         " loc(\"\", \"\") return } }", "missing"),
        ("module { func @main {", "line 1"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(IRParseError, match=message):
        parse_module(text)


# -- property test over generated graphs of every registered op ------------------------

_DTYPES = list(DType)


def _tensor_types() -> st.SearchStrategy[TensorType]:
    shapes = st.lists(st.integers(1, 4), max_size=3).map(tuple)
    return st.builds(TensorType, shapes, st.sampled_from(_DTYPES), st.booleans())


def _dense() -> st.SearchStrategy[DenseElements]:
    @st.composite
    def build(draw: st.DrawFn) -> DenseElements:
        dtype = draw(st.sampled_from(_DTYPES))
        shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        size = int(np.prod(shape, dtype=np.int64))
        raw = draw(st.binary(min_size=size * dtype.numpy.itemsize,
                             max_size=size * dtype.numpy.itemsize))
        return DenseElements(dtype, shape, raw)

    return build()


def _values_for(hint: object) -> st.SearchStrategy[object]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return st.one_of(*[_values_for(a) for a in typing.get_args(hint)])
    if hint is type(None):
        return st.none()
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_values_for(args[0]), max_size=4).map(tuple)
        return st.tuples(*[_values_for(a) for a in args])
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-(2**40), 2**40)
    if hint is float:
        return st.floats(allow_nan=False)
    if hint is str:
        return st.text(max_size=12)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return st.sampled_from(list(hint))
    if hint is TensorType:
        return _tensor_types()
    if hint is DenseElements:
        return _dense()
    raise AssertionError(f"no strategy for attribute type {hint!r}: add one here")


def _op_instances() -> st.SearchStrategy[Op]:
    def build(cls: type[Op]) -> st.SearchStrategy[Op]:
        hints = field_hints(cls)
        return st.fixed_dictionaries({k: _values_for(h) for k, h in hints.items()}).map(
            lambda kwargs: cls(**kwargs)
        )

    return st.one_of(*[build(cls) for _, cls in sorted(OP_REGISTRY.items())])


@st.composite
def _modules(draw: st.DrawFn) -> Module:
    """Arbitrary well-formed graphs (types need not satisfy the type rules: the text form
    must round-trip whatever a pass may produce)."""
    graph = Graph()
    values: list[int] = []
    for _ in range(draw(st.integers(1, 8))):
        op = draw(_op_instances())
        arity = op.arity if isinstance(op.arity, int) else draw(
            st.integers(op.arity[0], op.arity[1] if op.arity[1] is not None else op.arity[0] + 2)
        )
        if arity and not values:
            continue
        operands = [draw(st.sampled_from(values)) for _ in range(arity)]
        annotations = ()
        if draw(st.booleans()):
            lo = draw(st.floats(allow_nan=False))
            annotations = (Interval(lo, draw(st.floats(allow_nan=False))),)
        location = Location(draw(st.text(max_size=8)), draw(st.text(max_size=8)))
        values.append(graph.add(op, operands, draw(_tensor_types()), location, annotations))
    if not values:
        op = ConstantOp.of(np.float32(1.0))
        values.append(graph.add(op, [], op.value.type, Location("c", "Constant")))
    outputs = [
        (draw(st.text(max_size=6)), draw(st.sampled_from(values)))
        for _ in range(draw(st.integers(1, 3)))
    ]
    return Module(Function("main", graph, outputs))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_modules())
def test_generated_modules_round_trip(module: Module) -> None:
    text = print_module(module)
    parsed = parse_module(text)
    assert parsed == module
    assert print_module(parsed) == text
