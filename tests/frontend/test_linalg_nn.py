"""Gemm, MatMul, Conv, pooling, BatchNormalization, Softmax / LogSoftmax: ONNX -> IR.

Each op is checked against onnxruntime on tiny onnx.helper models and on a small
torch-exported model; interval rules are checked for soundness on random samples;
every CompileError names the ONNX node.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import fhec
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, BatchNormOp, LogSoftmaxOp, MaxPoolOp, SoftmaxOp
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.ir.types import DType, TensorType

RNG = np.random.default_rng(7)


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# -- building and checking models ---------------------------------------------


def _node_model(
    op_type: str,
    inputs: Mapping[str, np.ndarray],
    initializers: Mapping[str, np.ndarray] | None = None,
    *,
    input_order: Sequence[str] | None = None,
    outputs: Sequence[str] = ("y",),
    opset: int = 13,
    **attributes: Any,
) -> onnx.ModelProto:
    """One `op_type` node named 'node0' over graph inputs and initializers; output types
    come from ONNX shape inference (rank 0 where it fails: the error cases)."""
    initializers = dict(initializers or {})
    names = list(input_order or [*inputs, *initializers])
    node = helper.make_node(op_type, names, list(outputs), name="node0", **attributes)
    graph = helper.make_graph(
        [node],
        "g",
        [_value_info(name, value.dtype, value.shape) for name, value in inputs.items()],
        [],
        initializer=[numpy_helper.from_array(v, n) for n, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    known = {info.name: info for info in inferred}
    dtype = next(iter(inputs.values())).dtype
    for name in filter(None, outputs):
        model.graph.output.append(known.get(name, _value_info(name, dtype, ())))
    return model


def _value_info(name: str, dtype: np.dtype[Any], shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape)


def _check_against_onnxruntime(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    expected = session.run(None, dict(feeds))
    compiled = fhec.compile(model, backend="reference")
    got = compiled.run(dict(feeds))
    for output, want in zip(model.graph.output, expected, strict=True):
        assert got[output.name].shape == want.shape
        np.testing.assert_allclose(got[output.name], want, rtol=1e-4, atol=1e-5)
    # The module the pipeline produced still prints and parses back to itself.
    assert parse_module(print_module(compiled.module)) == compiled.module


def _compile_error(model: onnx.ModelProto) -> str:
    with pytest.raises(fhec.CompileError) as info:
        fhec.compile(model, backend="reference")
    message = str(info.value)
    assert "node 'node0'" in message, message
    return message


# -- Gemm ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "c_shape", "attributes"),
    [
        ((3, 4), (4, 5), None, {}),
        ((3, 4), (4, 5), (), {"beta": 0.5}),
        ((3, 4), (4, 5), (5,), {"alpha": 2.0}),
        ((3, 4), (4, 5), (1, 5), {}),
        ((3, 4), (4, 5), (3, 1), {"alpha": 0.25, "beta": -1.5}),
        ((4, 3), (5, 4), (3, 5), {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
        ((3, 4), (5, 4), (5,), {"transB": 1}),
    ],
)
def test_gemm_matches_onnxruntime(
    a_shape: tuple[int, ...],
    b_shape: tuple[int, ...],
    c_shape: tuple[int, ...] | None,
    attributes: dict[str, Any],
) -> None:
    initializers = {"b": _rand(*b_shape)}
    if c_shape is not None:
        initializers["c"] = _rand(*c_shape)
    a = _rand(*a_shape)
    model = _node_model("Gemm", {"a": a}, initializers, **attributes)
    _check_against_onnxruntime(model, {"a": a})


def test_gemm_with_computed_bias_matches_onnxruntime() -> None:
    a, c = _rand(2, 3), _rand(2, 4)
    model = _node_model("Gemm", {"a": a, "c": c}, {"b": _rand(3, 4)}, input_order=["a", "b", "c"])
    _check_against_onnxruntime(model, {"a": a, "c": c})


def test_gemm_bias_that_does_not_broadcast_is_an_error() -> None:
    model = _node_model(
        "Gemm",
        {"a": _rand(2, 3)},
        {
            "b": _rand(3, 4),
            "c": _rand(
                3,
            ),
        },
    )
    assert "does not fit (2, 4)" in _compile_error(model)


# -- MatMul -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [
        ((3, 4), (4, 5)),
        ((4,), (4,)),
        ((4,), (2, 4, 3)),
        ((2, 3, 3, 4), (4,)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((3, 4), (2, 4, 6)),
    ],
)
def test_matmul_matches_onnxruntime(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    a, b = _rand(*a_shape), _rand(*b_shape)
    _check_against_onnxruntime(_node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b})


def test_matmul_with_constant_weights_matches_onnxruntime() -> None:
    a = _rand(2, 3, 4)
    _check_against_onnxruntime(_node_model("MatMul", {"a": a}, {"w": _rand(4, 5)}), {"a": a})


def test_matmul_of_mismatched_shapes_is_an_error() -> None:
    model = _node_model("MatMul", {"a": _rand(2, 3)}, {"b": _rand(4, 5)})
    assert "inner dimensions differ: 3 and 4" in _compile_error(model)


# -- Conv ---------------------------------------------------------------------


def _attrs(**attributes: Any) -> dict[str, Any]:
    """ONNX attributes, with `kernel` short for kernel_shape."""
    if "kernel" in attributes:
        attributes["kernel_shape"] = attributes.pop("kernel")
    return attributes


CONV_CASES = {  # x shape, w shape, with bias, attributes
    "plain_with_bias": ((1, 3, 7, 7), (4, 3, 3, 3), True, {}),
    "strided_padded": ((2, 3, 8, 8), (4, 3, 3, 3), True, _attrs(strides=[2, 2], pads=[1] * 4)),
    "uneven_pads": ((1, 2, 6, 7), (3, 2, 3, 2), False, _attrs(strides=[2, 1], pads=[0, 1, 2, 0])),
    "dilated": ((1, 2, 9, 9), (3, 2, 3, 3), True, _attrs(dilations=[2, 3], pads=[2, 1, 2, 3])),
    "grouped": ((2, 4, 6, 6), (6, 2, 3, 3), True, _attrs(group=2, pads=[1, 1, 1, 1])),
    "depthwise": ((1, 4, 7, 7), (4, 1, 3, 3), False, _attrs(group=4, strides=[2, 2])),
    "1d": ((2, 3, 11), (5, 3, 3), True, _attrs(strides=[2], pads=[1, 2], dilations=[2])),
    "same_upper": ((1, 2, 7, 7), (3, 2, 3, 3), True, _attrs(auto_pad="SAME_UPPER", strides=[2, 2])),
    "same_lower_even_kernel": ((1, 2, 6, 6), (3, 2, 4, 2), False, _attrs(auto_pad="SAME_LOWER")),
    "valid": ((1, 2, 7, 8), (3, 2, 3, 3), True, _attrs(auto_pad="VALID", strides=[2, 3])),
    "kernel_shape_given": ((1, 2, 5, 5), (3, 2, 3, 3), True, _attrs(kernel=[3, 3])),
}  # fmt: skip


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv_matches_onnxruntime(case: tuple[Any, ...]) -> None:
    x_shape, w_shape, with_bias, attributes = case
    initializers = {"w": _rand(*w_shape)}
    if with_bias:
        initializers["b"] = _rand(w_shape[0])
    x = _rand(*x_shape)
    _check_against_onnxruntime(_node_model("Conv", {"x": x}, initializers, **attributes), {"x": x})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_dilated_same_conv_matches_onnx_reference(auto_pad: str) -> None:
    # onnxruntime refuses dilations with SAME padding; ONNX's reference evaluator follows
    # the spec (pads from the dilated kernel span), as fhec does.
    from onnx.reference import ReferenceEvaluator

    x = _rand(1, 2, 8, 7)
    model = _node_model(
        "Conv", {"x": x}, {"w": _rand(3, 2, 3, 2)}, auto_pad=auto_pad, dilations=[2, 3]
    )
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    got = fhec.compile(model, backend="reference").run({"x": x})["y"]
    assert got.shape == expected.shape == (1, 3, 8, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_conv_with_computed_weights_matches_onnxruntime() -> None:
    x, w = _rand(1, 2, 5, 5), _rand(3, 2, 2, 2)
    _check_against_onnxruntime(_node_model("Conv", {"x": x, "w": w}), {"x": x, "w": w})


def test_3d_conv_is_an_error() -> None:
    model = _node_model("Conv", {"x": _rand(1, 1, 4, 4, 4)}, {"w": _rand(1, 1, 2, 2, 2)})
    assert "3-D Conv is not supported" in _compile_error(model)


def test_conv_kernel_shape_unlike_the_weights_is_an_error() -> None:
    model = _node_model(
        "Conv", {"x": _rand(1, 1, 5, 5)}, {"w": _rand(1, 1, 3, 3)}, kernel_shape=[2, 2]
    )
    assert "does not match the weights' spatial shape (3, 3)" in _compile_error(model)


def test_conv_pads_together_with_auto_pad_is_an_error() -> None:
    model = _node_model(
        "Conv", {"x": _rand(1, 1, 5, 5)}, {"w": _rand(1, 1, 3, 3)}, auto_pad="VALID", pads=[1] * 4
    )
    assert "both pads and auto_pad=VALID" in _compile_error(model)


def test_conv_unknown_auto_pad_is_an_error() -> None:
    model = _node_model("Conv", {"x": _rand(1, 1, 5, 5)}, {"w": _rand(1, 1, 3, 3)}, auto_pad="SAME")
    assert "auto_pad='SAME' is not an ONNX padding mode" in _compile_error(model)


def test_conv_group_that_does_not_fit_the_channels_is_an_error() -> None:
    model = _node_model("Conv", {"x": _rand(1, 4, 5, 5)}, {"w": _rand(3, 2, 3, 3)}, group=2)
    assert "group=2 does not fit 4 input channels" in _compile_error(model)


# -- pooling ------------------------------------------------------------------

POOL_CASES = {  # x shape, attributes
    "default": ((1, 2, 6, 6), _attrs(kernel=[2, 2])),
    "strided": ((1, 2, 7, 7), _attrs(kernel=[3, 3], strides=[2, 2])),
    "pads": ((2, 3, 5, 5), _attrs(kernel=[3, 3], pads=[1, 1, 1, 1])),
    "asymmetric_pads": ((1, 1, 6, 5), _attrs(kernel=[3, 2], strides=[2, 1], pads=[1, 0, 0, 1])),
    "ceil": ((1, 2, 6, 6), _attrs(kernel=[3, 3], strides=[2, 2], ceil_mode=1)),
    "ceil_pads": ((1, 1, 7, 6), _attrs(kernel=[3, 3], strides=[2, 2], pads=[1] * 4, ceil_mode=1)),
    "same_upper": ((1, 2, 7, 7), _attrs(kernel=[2, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower": ((1, 2, 6, 6), _attrs(kernel=[3, 3], auto_pad="SAME_LOWER")),
    "valid": ((1, 2, 7, 7), _attrs(kernel=[3, 3], strides=[2, 2], auto_pad="VALID")),
    "1d": ((2, 3, 9), _attrs(kernel=[3], strides=[2], pads=[1, 1])),
    "1d_ceil": ((1, 2, 8), _attrs(kernel=[2], strides=[3], ceil_mode=1)),
}  # fmt: skip


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_average_pool_matches_onnxruntime(case: tuple[Any, ...], count_include_pad: int) -> None:
    x_shape, attributes = case
    x = _rand(*x_shape)
    model = _node_model("AveragePool", {"x": x}, count_include_pad=count_include_pad, **attributes)
    _check_against_onnxruntime(model, {"x": x})


@pytest.mark.parametrize("case", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_max_pool_matches_onnxruntime(case: tuple[Any, ...]) -> None:
    x_shape, attributes = case
    x = _rand(*x_shape)
    _check_against_onnxruntime(_node_model("MaxPool", {"x": x}, **attributes), {"x": x})


DILATED_POOL_CASES = {
    "2d": ((1, 2, 8, 8), _attrs(kernel=[2, 2], dilations=[2, 2])),
    "2d_padded_ceil": (
        (1, 1, 9, 8),
        _attrs(kernel=[3, 2], strides=[2, 2], dilations=[2, 3], pads=[1, 1, 1, 0], ceil_mode=1),
    ),
    "1d": ((1, 2, 10), _attrs(kernel=[3], dilations=[3], pads=[2, 2])),
}


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", DILATED_POOL_CASES.values(), ids=DILATED_POOL_CASES.keys())
def test_dilated_average_pool_matches_onnxruntime(
    case: tuple[Any, ...], count_include_pad: int
) -> None:
    x_shape, attributes = case
    x = _rand(*x_shape)
    model = _node_model(
        "AveragePool", {"x": x}, opset=19, count_include_pad=count_include_pad, **attributes
    )
    _check_against_onnxruntime(model, {"x": x})


@pytest.mark.parametrize("case", DILATED_POOL_CASES.values(), ids=DILATED_POOL_CASES.keys())
def test_dilated_max_pool_matches_onnxruntime(case: tuple[Any, ...]) -> None:
    x_shape, attributes = case
    x = _rand(*x_shape)
    _check_against_onnxruntime(_node_model("MaxPool", {"x": x}, **attributes), {"x": x})


LATE_WINDOW = _attrs(kernel=[3, 3], strides=[3, 3], pads=[1] * 4, ceil_mode=1)


@pytest.mark.parametrize("op_type", ["AveragePool", "MaxPool"])
def test_ceil_mode_window_starting_in_the_right_pad_is_dropped_from_opset_22(op_type: str) -> None:
    x = _rand(1, 2, 2, 2)
    model = _node_model(op_type, {"x": x}, opset=22, **LATE_WINDOW)
    _check_against_onnxruntime(model, {"x": x})
    assert fhec.compile(model, backend="reference").run({"x": x})["y"].shape == (1, 2, 1, 1)


@pytest.mark.parametrize("op_type", ["AveragePool", "MaxPool"])
def test_ceil_mode_window_starting_in_the_right_pad_before_opset_22_is_an_error(
    op_type: str,
) -> None:
    # ONNX's shape inference keeps that window before opset 22, onnxruntime drops it.
    model = _node_model(op_type, {"x": _rand(1, 2, 2, 2)}, opset=19, **LATE_WINDOW)
    assert "the last window starts in the right padding" in _compile_error(model)


def test_max_pool_of_uint8_with_pads_and_storage_order_matches_onnxruntime() -> None:
    x = RNG.integers(0, 256, (1, 2, 5, 5)).astype(np.uint8)
    model = _node_model("MaxPool", {"x": x}, kernel_shape=[3, 3], pads=[1] * 4, storage_order=1)
    _check_against_onnxruntime(model, {"x": x})


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 7)])
def test_global_average_pool_matches_onnxruntime(shape: tuple[int, ...]) -> None:
    x = _rand(*shape)
    _check_against_onnxruntime(_node_model("GlobalAveragePool", {"x": x}), {"x": x})


@pytest.mark.parametrize("op_type", ["AveragePool", "MaxPool", "GlobalAveragePool"])
def test_3d_pooling_is_an_error(op_type: str) -> None:
    attributes = {} if op_type == "GlobalAveragePool" else {"kernel_shape": [2, 2, 2]}
    model = _node_model(op_type, {"x": _rand(1, 1, 4, 4, 4)}, **attributes)
    assert f"3-D {op_type} is not supported" in _compile_error(model)


def test_max_pool_indices_output_is_an_error() -> None:
    model = _node_model(
        "MaxPool", {"x": _rand(1, 1, 4, 4)}, outputs=("y", "idx"), kernel_shape=[2, 2]
    )
    assert "the Indices output ('idx')" in _compile_error(model)


@pytest.mark.parametrize("op_type", ["AveragePool", "MaxPool"])
def test_ceil_mode_with_auto_pad_is_an_error(op_type: str) -> None:
    model = _node_model(
        op_type, {"x": _rand(1, 1, 5, 5)}, kernel_shape=[2, 2], auto_pad="VALID", ceil_mode=1
    )
    assert "ceil_mode=1 with auto_pad=VALID" in _compile_error(model)


def test_pool_kernel_shape_of_another_rank_is_an_error() -> None:
    model = _node_model("MaxPool", {"x": _rand(1, 1, 5, 5)}, kernel_shape=[2])
    assert "kernel_shape=[2] does not fit an input of 2 spatial axes" in _compile_error(model)


def test_pool_window_larger_than_its_input_is_an_error() -> None:
    model = _node_model("AveragePool", {"x": _rand(1, 1, 3, 3)}, kernel_shape=[4, 4])
    assert "window of span 4 does not fit axis 0 of size 3" in _compile_error(model)


# -- BatchNormalization ---------------------------------------------------------


def _batch_norm_parameters(channels: int) -> dict[str, np.ndarray]:
    return {
        "scale": _rand(channels),
        "bias": _rand(channels),
        "mean": _rand(channels),
        "var": RNG.uniform(0.2, 2.0, channels).astype(np.float32),
    }


@pytest.mark.parametrize("opset", [13, 15])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (4, 3), (2, 3, 6)])
def test_batch_normalization_matches_onnxruntime(shape: tuple[int, ...], opset: int) -> None:
    x = _rand(*shape)
    model = _node_model(
        "BatchNormalization", {"x": x}, _batch_norm_parameters(3), opset=opset, epsilon=1e-3
    )
    _check_against_onnxruntime(model, {"x": x})


def test_batch_normalization_training_mode_is_an_error() -> None:
    model = _node_model(
        "BatchNormalization", {"x": _rand(2, 3, 4)}, _batch_norm_parameters(3), opset=15,
        training_mode=1,
    )  # fmt: skip
    assert "training_mode=1" in _compile_error(model)


def test_batch_normalization_running_statistics_outputs_are_an_error() -> None:
    model = _node_model(
        "BatchNormalization", {"x": _rand(2, 3, 4)}, _batch_norm_parameters(3),
        outputs=("y", "running_mean", "running_var"), opset=15,
    )  # fmt: skip
    assert "running statistics outputs ['running_mean', 'running_var']" in _compile_error(model)


# -- Softmax, LogSoftmax ------------------------------------------------------


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, -3])
def test_softmax_matches_onnxruntime(op_type: str, axis: int | None) -> None:
    x = _rand(2, 3, 4) * 30  # large values: a naive exp would overflow in float32
    x[0, 0, 0] = 1000.0
    attributes = {} if axis is None else {"axis": axis}
    _check_against_onnxruntime(_node_model(op_type, {"x": x}, **attributes), {"x": x})


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax"])
def test_softmax_axis_out_of_range_is_an_error(op_type: str) -> None:
    assert "axis 2 is out of range" in _compile_error(
        _node_model(op_type, {"x": _rand(2, 3)}, axis=2)
    )


# -- torch-exported models ------------------------------------------------------


def _torch_models() -> dict[str, tuple[Any, tuple[int, ...]]]:
    import torch
    from torch import nn

    class BatchedMatMul(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 5, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight

    batch_norm = nn.BatchNorm2d(3)
    with torch.no_grad():
        batch_norm.running_mean.uniform_(-1, 1)
        batch_norm.running_var.uniform_(0.5, 2)
        batch_norm.weight.uniform_(-2, 2)
        batch_norm.bias.uniform_(-1, 1)
    return {
        "Gemm": (nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (2, 3, 4)),
        "MatMul": (BatchedMatMul(), (3, 4, 5)),
        "Conv": (nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (2, 4, 9, 9)),
        "Conv1d": (nn.Conv1d(3, 4, 5, padding=3, dilation=2), (2, 3, 12)),
        "AveragePool": (
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            (1, 3, 8, 8),
        ),
        "GlobalAveragePool": (nn.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
        "MaxPool": (nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (1, 2, 9, 9)),
        "MaxPool1d": (nn.MaxPool1d(2, stride=2), (2, 3, 9)),
        "BatchNormalization": (batch_norm, (2, 3, 4, 4)),
        "Softmax": (nn.Softmax(dim=1), (2, 5, 3)),
        "LogSoftmax": (nn.LogSoftmax(dim=-1), (2, 5)),
    }


@pytest.fixture(scope="module")
def torch_models() -> dict[str, tuple[Any, tuple[int, ...]]]:
    import torch

    torch.manual_seed(0)
    return _torch_models()


@pytest.mark.parametrize(
    "name",
    ["Gemm", "MatMul", "Conv", "Conv1d", "AveragePool", "GlobalAveragePool", "MaxPool",
     "MaxPool1d", "BatchNormalization", "Softmax", "LogSoftmax"],
)  # fmt: skip
def test_torch_exported_model_matches_onnxruntime(
    name: str, torch_models: dict[str, tuple[Any, tuple[int, ...]]]
) -> None:
    import torch

    module, shape = torch_models[name]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.randn(*shape),), buffer, dynamo=False, opset_version=13,
            input_names=["x"], output_names=["y"],
        )  # fmt: skip
    model = onnx.load_from_string(buffer.getvalue())
    op_types = {node.op_type for node in model.graph.node}
    assert name.removesuffix("1d") in op_types
    _check_against_onnxruntime(model, {"x": _rand(*shape)})


# -- interval rules -------------------------------------------------------------


def _assert_sound(
    op: Op, operands: Sequence[np.ndarray], secret: Sequence[bool], interval: Interval
) -> Interval:
    """The op's bound for the secret operands in `interval` (the rest constant) holds on
    random samples and on the interval's corners."""
    bounds = [interval if s else Interval.of(v) for v, s in zip(operands, secret, strict=True)]
    constants = [None if s else v for v, s in zip(operands, secret, strict=True)]
    bound = op.interval(bounds, constants)
    assert bound is not None
    for trial in range(40):
        at_corners = trial % 4 == 0  # every element at lo or hi: where linear bounds are met
        sample = [
            _sample_within(interval, v, at_corners) if s else v
            for v, s in zip(operands, secret, strict=True)
        ]
        result = op.evaluate(sample).astype(np.float64)
        slack = 1e-5  # float32 rounding of evaluate at the corners
        assert bound.lo - slack <= result.min() and result.max() <= bound.hi + slack, trial
    return bound


def _sample_within(interval: Interval, like: np.ndarray, at_corners: bool) -> np.ndarray:
    if at_corners:
        return RNG.choice([interval.lo, interval.hi], like.shape).astype(like.dtype)
    return RNG.uniform(interval.lo, interval.hi, like.shape).astype(like.dtype)


def test_gemm_interval_is_sound_and_exact_per_output() -> None:
    a_bound = Interval(-1.0, 2.0)
    weights, bias = _rand(4, 3), _rand(3)
    op = GemmOp(alpha=0.5, beta=2.0)
    bound = _assert_sound(op, [_rand(2, 4), weights, bias], [True, False, False], a_bound)
    # Exact: each column's top is reached with the input at hi where its weight is
    # positive and at lo elsewhere.
    corner = np.where(weights > 0, a_bound.hi, a_bound.lo)
    tops = 0.5 * (corner * weights).sum(axis=0) + 2.0 * bias
    assert bound.hi == pytest.approx(float(tops.max()))


def test_gemm_interval_with_constant_left_operand_and_computed_bias_is_sound() -> None:
    op = GemmOp(trans_a=True, trans_b=True, beta=-1.0)
    a, b, c = _rand(4, 2), _rand(3, 4), _rand(2, 3)
    bounds = [Interval.of(a), Interval(-1.0, 1.0), Interval(-0.5, 0.5)]
    bound = op.interval(bounds, [a, None, None])
    assert bound is not None
    for _ in range(30):
        b = RNG.uniform(-1, 1, b.shape).astype(np.float32)
        c = RNG.uniform(-0.5, 0.5, c.shape).astype(np.float32)
        result = op.evaluate([a, b, c])
        assert bound.lo <= result.min() and result.max() <= bound.hi


def test_matmul_interval_is_sound_for_batched_weights_either_side() -> None:
    weights = _rand(2, 4, 3)
    _assert_sound(MatMulOp(), [_rand(2, 5, 4), weights], [True, False], Interval(-0.5, 1.5))
    _assert_sound(MatMulOp(), [_rand(3, 4), _rand(2, 4, 6)], [False, True], Interval(0.0, 3.0))
    _assert_sound(MatMulOp(), [_rand(4), _rand(4)], [True, False], Interval(-2.0, 1.0))


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 2, 1, 0)])
def test_conv_interval_is_sound(pads: tuple[int, ...]) -> None:
    op = ConvOp(strides=(1, 2), pads=pads, dilations=(1, 1), group=2)
    operands = [_rand(1, 4, 5, 5), _rand(6, 2, 3, 3), _rand(6)]
    # An input interval away from 0: the padded taps' zeros must still be covered.
    _assert_sound(op, operands, [True, False, False], Interval(1.0, 2.0))


def test_conv_interval_covers_border_outputs_that_read_padding() -> None:
    # 3x3 ones over x in [1, 2]: a corner output sums only 4 real taps, so it can be 4,
    # below the 9 a window of real taps reaches.
    op = ConvOp(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1))
    weights = np.ones((1, 1, 3, 3), dtype=np.float32)
    bound = _assert_sound(op, [_rand(1, 1, 4, 4), weights], [True, False], Interval(1.0, 2.0))
    corner = op.evaluate([np.ones((1, 1, 4, 4), dtype=np.float32), weights])[0, 0, 0, 0]
    assert corner == 4.0 and bound.lo <= corner and bound.hi == 18.0


def test_pool_and_softmax_intervals_are_sound() -> None:
    x = [_rand(1, 2, 5, 5)]
    window = ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1))
    positive = Interval(1.0, 3.0)
    assert _assert_sound(AvgPoolOp(*window, count_include_pad=True), x, [True], positive) == (
        Interval(0.0, 3.0)
    )
    assert _assert_sound(AvgPoolOp(*window), x, [True], positive) == positive
    assert _assert_sound(MaxPoolOp(*window, ceil_mode=True), x, [True], positive) == positive
    assert _assert_sound(SoftmaxOp(axis=1), x, [True], Interval(-50, 50)) == Interval(0.0, 1.0)
    assert _assert_sound(LogSoftmaxOp(), x, [True], Interval(-5, 5)).hi == 0.0


def test_batch_norm_interval_is_sound_and_exact_per_channel() -> None:
    params = _batch_norm_parameters(3)
    op = BatchNormOp(epsilon=1e-3)
    operands = [_rand(2, 3, 4), params["scale"], params["bias"], params["mean"], params["var"]]
    bound = _assert_sound(op, operands, [True, False, False, False, False], Interval(-1.0, 2.0))
    corners = op.evaluate([np.array([[[-1.0], [-1.0], [-1.0]], [[2.0], [2.0], [2.0]]],
                                    dtype=np.float32), *operands[1:]])  # fmt: skip
    assert bound.lo == pytest.approx(corners.min()) and bound.hi == pytest.approx(corners.max())


def test_interval_is_unknown_without_constant_weights() -> None:
    unknown = Interval(-1.0, 1.0)
    assert MatMulOp().interval([unknown, unknown], [None, None]) is None
    assert GemmOp().interval([unknown, unknown], [None, None]) is None
    conv = ConvOp((1,), (0, 0), (1,))
    assert conv.interval([unknown, unknown], [None, None]) is None
    bn = BatchNormOp()
    assert bn.interval([unknown] * 5, [None] * 5) is None


# -- type rules -----------------------------------------------------------------

F32 = DType.F32


def _t(*shape: int, dtype: DType = F32) -> TensorType:
    return TensorType(shape, dtype)


@pytest.mark.parametrize(
    ("op", "operands", "message"),
    [
        (GemmOp(), [_t(2, 3, 1), _t(3, 4)], "gemm takes matrices"),
        (GemmOp(trans_b=True), [_t(2, 3), _t(3, 4)], "inner dimensions differ: 3 and 4"),
        (MatMulOp(), [_t(), _t(3)], "rank >= 1"),
        (MatMulOp(), [_t(3), _t(3, dtype=DType.F64)], "differ in type"),
        (MatMulOp(), [_t(2, 3, 4), _t(3, 4, 5)], "shape mismatch"),
        (ConvOp((1,), (0, 0), (1,)), [_t(1, 3), _t(1, 3)], "conv takes x"),
        (ConvOp((1,), (0, 0), (1,)), [_t(1, 2, 5), _t(3, 2, 2), _t(2)], "bias of shape (2,)"),
        (ConvOp((1,), (0, 0), (1,)), [_t(1, 2, 5), _t(3, 2, 2, dtype=DType.F64)], "differ in type"),
        (ConvOp((1, 1), (0, 0), (1,)), [_t(1, 2, 5), _t(3, 2, 2)], "strides has 2 values"),
        (ConvOp((1,), (0,), (1,)), [_t(1, 2, 5), _t(3, 2, 2)], "pads has 1 values, 1 spatial"),
        (ConvOp((0,), (0, 0), (1,)), [_t(1, 2, 5), _t(3, 2, 2)], "must be positive"),
        (MaxPoolOp((2,), (1,), (0, 0), (1,)), [_t(2, 5)], "(N, C, *spatial)"),
        (AvgPoolOp((2,), (1,), (0, 0), (1,)), [_t(1, 2, 5, dtype=DType.I32)], "takes floats"),
        (BatchNormOp(), [_t(4)] * 5, "float (N, C, ...)"),
        (BatchNormOp(), [_t(2, 3), _t(3), _t(3), _t(2), _t(3)], "mean is tensor<2xf32>"),
        (SoftmaxOp(axis=-3), [_t(2, 3)], "axis -3 is out of range"),
        (LogSoftmaxOp(), [_t(2, 3, dtype=DType.I64)], "takes floats"),
    ],
)
def test_type_rules_reject_operands_that_do_not_fit(
    op: Op, operands: list[TensorType], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        op.infer(operands)


def test_results_are_secret_iff_an_operand_is() -> None:
    secret_x = TensorType((1, 2, 5), F32, secret=True)
    conv = ConvOp((1,), (0, 0), (1,))
    assert conv.infer([secret_x, _t(3, 2, 2)]).secret
    assert not conv.infer([_t(1, 2, 5), _t(3, 2, 2)]).secret
    assert BatchNormOp().infer([_t(1, 2, 5), *[_t(2)] * 3, TensorType((2,), F32, True)]).secret
