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
    """x^(2^70) by 70 squarings: depth 70, while N = 65536 holds 42 levels of 40 bits
    (and no more than 61 on the lowest waterline select-params-ckks tries, 28 bits)."""
    names = ["x", *[f"s{i}" for i in range(69)], "y"]
    nodes = [
        helper.make_node("Mul", [a, a], [b], name=f"square{i}")
        for i, (a, b) in enumerate(itertools.pairwise(names))
    ]
    with pytest.raises(CompileError) as raised:
        compile_ckks(tiny_model(nodes, {}, outputs=4), {"x": X}, 16)
    message = str(raised.value)
    assert "needs multiplicative depth 70" in message
    assert "N=65536 allows depth 42 at 128-bit security" in message
    assert "node 'square0' (Mul) -> node 'square1' (Mul)" in message
    assert message.rstrip().count("(Mul)") == 70 and "square69" in message


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
            helper.make_node("Softmax", ["x"], ["y"], name="probs", axis=0),
            "softmax over axis 0 of an encrypted",  # across samples; the last axis compiles
        ),
        (
            helper.make_node("ReduceMax", ["x"], ["y"], name="peak", keepdims=1),
            "reduce_max on encrypted",
        ),
    ],
)
def test_op_with_no_ckks_form(node: object, found: str) -> None:
    """Inside the model, not at its end (split-epilogue-ckks leaves trailing ones to the
    client): y = op(x) + x."""
    node.output[0] = "t"  # type: ignore[attr-defined]
    after = helper.make_node("Add", ["t", "x"], ["y"], name="after")
    model = tiny_model([node, after], {}, outputs=4)  # type: ignore[list-item]
    with pytest.raises(CompileError, match=found) as raised:
        compile_ckks(model, {"x": X}, 16, FAST)
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


def _two_inputs(nodes: list[object], second: list[int | str]) -> object:
    from onnx import TensorProto

    model = tiny_model(nodes, {}, outputs=4)  # type: ignore[arg-type]
    model.graph.input.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, second))
    return model


def test_operands_that_must_be_constants() -> None:
    public = {**FAST, "annotate-secrecy": "public=p"}
    data = {"x": X, "p": X}
    divide = _two_inputs([helper.make_node("Div", ["x", "p"], ["y"], name="ratio")], ["N", 4])
    with pytest.raises(CompileError, match=r"node 'ratio'.*needs the divisor to be a constant"):
        compile_ckks(divide, data, 16, public)  # type: ignore[arg-type]
    dense = _two_inputs([helper.make_node("Gemm", ["x", "p"], ["y"], name="dense")], [4, 4])
    with pytest.raises(CompileError, match=r"node 'dense'.*needs the weights to be a constant"):
        compile_ckks(dense, {"x": X, "p": X[:4]}, 16, public)  # type: ignore[arg-type]
    product = _two_inputs([helper.make_node("MatMul", ["x", "p"], ["y"], name="bilinear")], [4, 4])
    with pytest.raises(CompileError, match=r"node 'p'.*keeps the batch axis"):  # secret weights
        compile_ckks(product, {"x": X, "p": X[:4]}, 16, FAST)  # type: ignore[arg-type]
    batched = _two_inputs(
        [helper.make_node("MatMul", ["x", "p"], ["y"], name="bilinear")], ["N", 4, 4]
    )
    del batched.graph.output[:]  # type: ignore[attr-defined]
    result = helper.make_tensor_value_info("y", 1, ["N", "M", 4])  # (16, 4) @ (16, 4, 4)
    batched.graph.output.append(result)  # type: ignore[attr-defined]
    weights = np.repeat(X[:, :, None], 4, axis=2)
    with pytest.raises(CompileError, match=r"node 'bilinear'.*MatMul on encrypted values needs"):
        compile_ckks(batched, {"x": X, "p": weights}, 16, FAST)  # type: ignore[arg-type]


def test_mixing_encrypted_and_public_in_a_concat() -> None:
    model = _two_inputs(
        [helper.make_node("Concat", ["x", "p"], ["y"], name="join", axis=1)], ["N", 4]
    )
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 8  # type: ignore[attr-defined]
    with pytest.raises(CompileError, match=r"node 'join'.*mixing encrypted and public values"):
        compile_ckks(model, {"x": X, "p": X}, 16, {**FAST, "annotate-secrecy": "public=p"})  # type: ignore[arg-type]


def test_a_scalar_secret_input_has_no_batch_axis() -> None:
    from onnx import TensorProto

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "x"], ["y"], name="square")],
        "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match=r"node 'x'.*scalar secret input has no batch axis"):
        compile_ckks(model, {"x": np.float32(0.5)}, 1, FAST)


def test_parameters_that_cannot_exist() -> None:
    square = tiny_model([helper.make_node("Mul", ["x", "x"], ["y"], name="square")], {}, outputs=4)
    with pytest.raises(CompileError, match="a batch of 40000 samples does not fit 32768 slots"):
        compile_ckks(square, {"x": X}, 40000)
    big = {"pack-slots-ckks": "scale_bits=58", "select-params-ckks": "security=0"}
    with pytest.raises(
        CompileError, match=r"node 'square'.*needs a \d+-bit last prime; SEAL's limit is 60"
    ):
        compile_ckks(square, {"x": X * 100}, 16, big)
