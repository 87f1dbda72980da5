"""Small hand-built ONNX models for the training tests (seeded weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FEATURES = 4


def _weights(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.5).astype(np.float32)


def _save(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
          outputs: list[onnx.ValueInfoProto], initializers: dict[str, np.ndarray],
          path: Path) -> Path:
    graph = helper.make_graph(
        nodes, path.stem, inputs, outputs,
        [numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _x(width: int = FEATURES, batch: str | int = "N") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])


def _y(name: str, width: int, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, ["N", width])


def mlp3(path: Path) -> Path:
    """x (N, 4) -> Gemm 'fc1' -> Relu -> Gemm 'fc2' -> logits (N, 3)."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
    ]
    weights = {"fc1.weight": _weights(4, 5, seed=1), "fc1.bias": _weights(5, seed=2),
               "fc2.weight": _weights(5, 3, seed=3), "fc2.bias": _weights(3, seed=4)}
    return _save(nodes, [_x()], [_y("logits", 3)], weights, path)


def binary(path: Path) -> Path:
    """x (N, 4) -> Gemm 'fc' -> Sigmoid 'sigmoid' -> probability (N, 1)."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["z"], name="fc"),
        helper.make_node("Sigmoid", ["z"], ["probability"], name="sigmoid"),
    ]
    weights = {"fc.weight": _weights(4, 1, seed=5), "fc.bias": _weights(1, seed=6)}
    return _save(nodes, [_x()], [_y("probability", 1)], weights, path)


def reduce_max_head(path: Path) -> Path:
    """x -> Gemm 'fc' -> ReduceMax 'pick' (no derivative rule) -> y (N, 1)."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc.weight"], ["z"], name="fc"),
        helper.make_node("ReduceMax", ["z"], ["y"], name="pick", axes=[1], keepdims=1),
    ]
    return _save(nodes, [_x()], [_y("y", 1)], {"fc.weight": _weights(4, 3)}, path)


def no_gemm(path: Path) -> Path:
    """x * 'scale' -> y: no Gemm for `trainable="last"` to find."""
    nodes = [helper.make_node("Mul", ["x", "scale"], ["y"], name="mul")]
    return _save(nodes, [_x()], [_y("y", 4)], {"scale": _weights(4)}, path)


def fixed_batch(path: Path) -> Path:
    """x of the fixed shape (2, 4) -> Gemm 'fc' -> y."""
    nodes = [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    return _save(nodes, [_x(batch=2)], [y], {"fc.weight": _weights(4, 3)}, path)


def label_input(path: Path) -> Path:
    """Inputs x and 'label' (the name training adds) -> Add -> Gemm 'fc' -> y."""
    nodes = [
        helper.make_node("Add", ["x", "label"], ["s"], name="add"),
        helper.make_node("Gemm", ["s", "fc.weight"], ["y"], name="fc"),
    ]
    label = helper.make_tensor_value_info("label", TensorProto.FLOAT, ["N", 4])
    return _save(nodes, [_x(), label], [_y("y", 3)], {"fc.weight": _weights(4, 3)}, path)


def argmax_output(path: Path) -> Path:
    """x -> Gemm 'fc' -> ArgMax 'argmax' -> class (N, 1) int64."""
    nodes = [
        helper.make_node("Gemm", ["x", "fc.weight"], ["z"], name="fc"),
        helper.make_node("ArgMax", ["z"], ["class"], name="argmax", axis=1, keepdims=1),
    ]
    return _save(nodes, [_x()], [_y("class", 1, TensorProto.INT64)],
                 {"fc.weight": _weights(4, 3)}, path)


def two_heads(path: Path) -> Path:
    """x -> Gemm 'head_a' -> a (N, 3); x -> Gemm 'head_b' -> b (N, 2)."""
    nodes = [
        helper.make_node("Gemm", ["x", "a.weight"], ["a"], name="head_a"),
        helper.make_node("Gemm", ["x", "b.weight"], ["b"], name="head_b"),
    ]
    weights = {"a.weight": _weights(4, 3, seed=7), "b.weight": _weights(4, 2, seed=8)}
    return _save(nodes, [_x()], [_y("a", 3), _y("b", 2)], weights, path)


BUILDERS = (mlp3, binary, reduce_max_head, no_gemm, fixed_batch, label_input, argmax_output,
            two_heads)
