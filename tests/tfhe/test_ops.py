"""The tfhe dialect: semantics, type rules and the text round trip of each op."""

from __future__ import annotations

import numpy as np
import pytest

from fhec.ir.attributes import DenseElements
from fhec.ir.graph import Function, Graph, Module
from fhec.ir.location import Location
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.tfhe import BitWidth, DequantizeOp, LookupOp, QuantizeOp, RoundOp
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.ir.types import DType, TensorType

HERE = Location("n", "Test")


def test_quantize_rounds_half_to_even_and_clips_to_the_bit_range() -> None:
    op = QuantizeOp((0.5,), (3,), -1, 3, False)
    x = np.array([[-10.0, -1.5, -0.25, 0.25, 0.75, 1.0, 100.0]], dtype=np.float32)
    # x / 0.5 + 3 = -17, 0, 2.5, 3.5, 4.5, 5, 203 -> round half even, clip to [0, 7]
    assert op.evaluate([x]).tolist() == [[0, 0, 2, 4, 4, 5, 7]]


def test_quantize_per_channel_uses_each_channels_scale() -> None:
    op = QuantizeOp((1.0, 0.1), (0, 5), -1, 4, True)
    x = np.array([[2.0, 0.2], [-3.0, -0.3]], dtype=np.float32)
    assert op.evaluate([x]).tolist() == [[2, 7], [-3, 2]]
    assert op.bounds == (-8, 7)


def test_dequantize_inverts_quantize_on_the_grid() -> None:
    q = np.array([[0, 3, 7], [1, 2, 5]], dtype=np.int64)
    op = DequantizeOp((0.5, 2.0, 1.0), (1, 0, 7), -1)
    assert op.evaluate([q]).tolist() == [[-0.5, 6.0, 0.0], [0.0, 4.0, -2.0]]
    back = QuantizeOp((0.5, 2.0, 1.0), (1, 0, 7), -1, 3, False)
    assert np.array_equal(back.evaluate([op.evaluate([q])]), q)


def test_dequantize_axis_counts_from_the_end_so_leading_axes_broadcast() -> None:
    op = DequantizeOp((1.0, 10.0), (0, 0), -2)
    q = np.ones((3, 2, 4), dtype=np.int64)
    assert op.evaluate([q])[:, 1, :].tolist() == [[10.0] * 4] * 3
    assert op.evaluate([q[None]]).shape == (1, 3, 2, 4)


def test_round_matches_concretes_round_bit_pattern() -> None:
    x = np.arange(-20, 21, dtype=np.int64)
    expected = (x + 4) // 8 * 8  # concrete: (x + half) // unit * unit
    assert np.array_equal(RoundOp(3).evaluate([x]), expected)


def test_lookup_tabulates_a_step_function_per_channel() -> None:
    domain = np.arange(-8, 8)
    outputs = np.stack([np.maximum(domain, 0) // 2, -domain], axis=1)  # (16, 2): 2 tables
    op = LookupOp.tabulate(domain, outputs[:, None, :])  # tables of shape (1, 2)
    x = np.array([[-8, -3], [5, 7], [100, -100]], dtype=np.int64)
    # Beyond the domain the first and last outputs hold.
    assert op.evaluate([x]).tolist() == [[0, 3], [2, -7], [3, 8]]
    assert op.thresholds.shape == (1, 2, 15)  # -x changes at every point: 16 runs


def test_lookup_with_one_table_uses_searchsorted() -> None:
    domain = np.arange(0, 64)
    op = LookupOp.tabulate(domain, np.clip(domain // 10, 0, 3))
    assert op.values.shape == (4,) and op.thresholds.array.tolist() == [10, 20, 30]
    assert op.evaluate([np.array([0, 9, 10, 35, 1000])]).tolist() == [0, 0, 1, 3, 3]


@pytest.mark.parametrize(
    ("op", "operand", "message"),
    [
        (QuantizeOp((1.0,), (0,), -1, 4), TensorType((2,), DType.I64), "takes floats"),
        (QuantizeOp((0.0,), (0,), -1, 4), TensorType((2,), DType.F32), "positive"),
        (QuantizeOp((1.0, 2.0), (0, 0), -1, 4), TensorType((2, 3), DType.F32), "2 scales"),
        (DequantizeOp((1.0,), (0,), -1), TensorType((2,), DType.F32), "takes integers"),
        (DequantizeOp((1.0,), (0, 1), -1), TensorType((2,), DType.I64), "one zero point"),
        (DequantizeOp((1.0,), (0,), 0), TensorType((2,), DType.I64), "counts from the end"),
        (RoundOp(0), TensorType((2,), DType.I64), "at least one bit"),
        (RoundOp(2), TensorType((2,), DType.F32), "takes integers"),
    ],
)
def test_type_rules_refuse_what_does_not_fit(op: object, operand: TensorType, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        op.infer([operand])  # type: ignore[attr-defined]


def test_lookup_type_rule_checks_the_table_shapes() -> None:
    steps = DenseElements.from_array(np.zeros((3, 2), dtype=np.int64))
    values = DenseElements.from_array(np.zeros((3, 3), dtype=np.int64))
    LookupOp(steps, values).infer([TensorType((5, 3), DType.I64)])
    with pytest.raises(ValueError, match="do not broadcast"):
        LookupOp(steps, values).infer([TensorType((5, 4), DType.I64)])
    with pytest.raises(ValueError, match="do not fit"):
        LookupOp(values, values).infer([TensorType((5, 3), DType.I64)])


def test_every_tfhe_op_and_the_bits_annotation_round_trip_through_text() -> None:
    graph = Graph()
    x_type = TensorType((1, 2), DType.F32, True)
    x = graph.add(InputOp("x", x_type), [], x_type, HERE)
    chain = [
        QuantizeOp((0.25, 0.5), (3, 0), -1, 4, False),
        RoundOp(2, approximate=False),
        LookupOp.tabulate(np.arange(0, 16), np.arange(0, 16)[:, None] // 4 * np.ones((1, 2))),
        DequantizeOp((1.5,), (2,), -1),
    ]
    value = x
    for op in chain:
        result_type = op.infer([graph.node(value).type])
        value = graph.add(op, [value], result_type, HERE, (BitWidth(4, False),))
    module = Module(Function("main", graph, [("y", value)]))
    text = print_module(module)
    assert "tfhe.lookup" in text and "#bits{width = 4, signed = false}" in text
    assert parse_module(text) == module
