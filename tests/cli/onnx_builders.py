"""Small ONNX models for the CLI and API tests (tests/api imports this file too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(
    graph: onnx.GraphProto, path: Path, opset: int = OPSET, extra_domains: tuple[str, ...] = ()
) -> Path:
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(domain, 1) for domain in extra_domains]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mlp(path: Path, features: int = 4, classes: int = 3) -> Path:
    """x[N, features] -> Gemm 'fc' -> Relu 'relu' -> y[N, classes]."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((features, classes)).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Gemm", ["x", "W", "b"], ["h"], name="fc"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    return _save(graph, path)


def non_max_suppression(path: Path) -> Path:
    """An op fhec does not support: NonMaxSuppression (node 'nms')."""
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["selected"], name="nms")
    graph = helper.make_graph(
        [node],
        "nms",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 6]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
    )
    return _save(graph, path)


def custom_domain_op(path: Path) -> Path:
    """x -> com.example::Frobnicate (node 'frob') -> y."""
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    return _save(graph, path, extra_domains=("com.example",))


def symbolic_width(path: Path) -> Path:
    """x[N, C] -> Relu -> y: the second dimension is symbolic."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C"])],
    )
    return _save(graph, path)


def int_input(path: Path, elem_type: int = TensorProto.INT64) -> Path:
    """ids[N, 3] (integers) + [1, 2, 3] -> y."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    offset = numpy_helper.from_array(np.array([1, 2, 3], dtype=dtype), "offset")
    graph = helper.make_graph(
        [helper.make_node("Add", ["ids", "offset"], ["y"], name="add")],
        "ints",
        [helper.make_tensor_value_info("ids", elem_type, ["N", 3])],
        [helper.make_tensor_value_info("y", elem_type, ["N", 3])],
        [offset],
    )
    return _save(graph, path)


def batched_plus_fixed(path: Path) -> Path:
    """x[N, 4] + bias[4] -> y[N, 4]: one input with a batch axis, one without."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"], name="add")],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    return _save(graph, path)


def onnxruntime_run(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def sum_of_two(path: Path) -> Path:
    """a[N, 2] + b[N, 2] -> y: two inputs with a batch axis."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    return _save(graph, path)
