"""Models the CKKS backend cannot compile: each a CompileError naming the ONNX node."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ckks_helpers import FAST, compile_ckks, tiny_model
from onnx import helper

from fhec.ir.errors import CompileError, FhecError

X = np.random.default_rng(0).uniform(-1, 1, size=(16, 4)).astype(np.float32)


def test_too_deep_for_any_parameters() -> None:
    """x^(2^45) by 45 squarings: depth 45, while N = 65536 holds 42 levels of 40 bits."""
    names = ["x", *[f"s{i}" for i in range(44)], "y"]
    nodes = [
        helper.make_node("Mul", [a, a], [b], name=f"square{i}")
        for i, (a, b) in enumerate(itertools.pairwise(names))
    ]
    with pytest.raises(CompileError) as raised:
        compile_ckks(tiny_model(nodes, {}, outputs=4), {"x": X}, 16)
    message = str(raised.value)
    assert "needs multiplicative depth 45" in message
    assert "N=65536 allows depth 42 at 128-bit security" in message
    assert "node 'square0' (Mul) -> node 'square1' (Mul)" in message
    assert message.rstrip().count("(Mul)") == 45 and "square44" in message


def test_too_deep_at_a_fixed_degree() -> None:
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["s"], name="square"),
        helper.make_node("Mul", ["s", "s"], ["y"], name="fourth"),
    ]
    options = {"select-params-ckks": "poly_degree=4096"}  # 109 bits: no room for 2 levels
    with pytest.raises(CompileError, match=r"needs multiplicative depth 2.*N=4096 allows depth 0"):
        compile_ckks(tiny_model(nodes, {}, outputs=4), {"x": X}, 16, options)


@pytest.mark.parametrize(
    ("node", "found"),
    [
        (
            helper.make_node("Div", ["x", "x"], ["y"], name="ratio"),
            "dividing by an encrypted value",
        ),
        (
            helper.make_node("Softmax", ["x"], ["y"], name="probs", axis=1),
            "nn.softmax on encrypted",
        ),
        (
            helper.make_node("ReduceMax", ["x"], ["y"], name="peak", keepdims=1),
            "reduce_max on encrypted",
        ),
    ],
)
def test_op_with_no_ckks_form(node: object, found: str) -> None:
    outputs = 1 if node.op_type == "ReduceMax" else 4  # type: ignore[attr-defined]
    with pytest.raises(CompileError, match=found) as raised:
        compile_ckks(tiny_model([node], {}, outputs=outputs), {"x": X}, 16, FAST)  # type: ignore[list-item]
    assert f"node '{node.name}'" in str(raised.value)  # type: ignore[attr-defined]


def test_mixing_samples_is_refused() -> None:
    node = helper.make_node("Transpose", ["x"], ["y"], name="flip", perm=[1, 0])
    with pytest.raises(CompileError, match=r"node 'flip'.*moves elements across samples"):
        compile_ckks(tiny_model([node], {}, outputs=16), {"x": X}, 4, FAST)
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="fold")
    model = tiny_model([node], {"shape": np.array([-1, 2], dtype=np.int64)}, outputs=2)
    with pytest.raises(CompileError, match=r"node 'fold'.*keeps the batch axis \(axis 0, 16"):
        compile_ckks(model, {"x": X}, 16, FAST)


def test_contracting_the_batch_is_refused() -> None:
    node = helper.make_node("Gemm", ["x", "W"], ["y"], name="dense", transA=1)
    with pytest.raises(CompileError, match=r"node 'dense'.*untransposed"):
        compile_ckks(tiny_model([node], {"W": np.ones((16, 4))}, outputs=4), {"x": X}, 16, FAST)


def test_unknown_options_refused() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="act")
    model = tiny_model([node], {}, outputs=4)
    for options, found in [
        ({"pack-slots-ckks": "layout=diagonal"}, "layout 'diagonal' is not implemented"),
        ({"select-params-ckks": "security=100"}, "security must be one of"),
        ({"select-params-ckks": "poly_degree=3000"}, "poly_degree must be 0 or one of"),
        ({"insert-rescale-ckks": "policy=never"}, "unknown policy 'never'"),
        ({"approximate-activations": "error_target=0"}, "error_target must be > 0"),
        ({"approximate-activations": "max_degree=0"}, "max_degree must be in 1..255"),
        ({"approximate-activations": "margin=-1"}, "margin must be >= 0"),
        ({"pack-slots-ckks": "scale_bits=70"}, "scale_bits must be in 20..59"),
        ({"pack-slots-ckks": "plain_scale_bits=5"}, "plain_scale_bits must be 0 or in 10..59"),
    ]:
        with pytest.raises(FhecError, match=found):
            compile_ckks(model, {"x": X}, 16, options)


def test_waterline_keeps_low_scale_products_unrescaled() -> None:
    """x (2^30) times a constant encoded at 2^20 is at 2^50: the waterline policy (EVA)
    leaves it (no level spent), always-rescale divides it down to 2^20 (a level spent,
    10 bits of precision lost)."""
    nodes = [helper.make_node("Mul", ["x", "c"], ["y"], name="scale")]
    model = tiny_model(nodes, {"c": np.full(4, 0.5)}, outputs=4)
    options = {"pack-slots-ckks": "scale_bits=30,plain_scale_bits=20"}
    waterline = str(compile_ckks(model, {"x": X}, 16, options).module)
    assert "ckks.rescale" not in waterline and "scale_bits = 50, level = 0" in waterline
    always = compile_ckks(model, {"x": X}, 16, {**options, "insert-rescale-ckks": "policy=always"})
    assert "ckks.rescale(%" in str(always.module)
    assert "scale_bits = 20, level = 1" in str(always.module)
