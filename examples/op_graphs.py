"""Hand-built ONNX graphs that chain the supported ops no trained example uses.

Weights are fixed random numbers (seeded); inputs are standard normal samples, and
calibration samples come from another seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from cases import Case
from onnx import TensorProto, helper, numpy_helper

SAMPLES = 16
CALIBRATION_SAMPLES = 32
INPUT_SEED = 1
CALIBRATION_SEED = 2
WEIGHT_SEED = 3


class GraphBuilder:
    """A small helper over onnx.helper: named nodes, initializers from numpy arrays."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(WEIGHT_SEED)

    def weight(self, name: str, shape: Sequence[int], scale: float = 0.5) -> str:
        array = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.constant(name, array)

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.constant(name, np.array(value, dtype=np.float32))

    def ints(self, name: str, values: Sequence[int]) -> str:
        return self.constant(name, np.array(values, dtype=np.int64))

    def node(self, op_type: str, inputs: Sequence[str], output: str, **attributes: Any) -> str:
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [output], name=output, **attributes)
        )
        return output

    def model(
        self,
        inputs: Sequence[tuple[str, Sequence[int | str]]],
        outputs: Sequence[tuple[str, Sequence[int | str]]],
        opset: int,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
            self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fhec-examples"
        )
        # The IR version onnxruntime accepts for this opset, not the newest onnx writes.
        model.ir_version = 9 if opset <= 20 else 10
        onnx.checker.check_model(model, full_check=True)
        return model


def _samples(shape: Sequence[int], seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def _case(name: str, description: str, model: onnx.ModelProto, sample_shape: Sequence[int]) -> Case:
    input_name = model.graph.input[0].name
    return Case(
        name=name,
        description=description,
        model=model,
        inputs={input_name: _samples(sample_shape, INPUT_SEED, SAMPLES)},
        calibration={input_name: _samples(sample_shape, CALIBRATION_SEED, CALIBRATION_SAMPLES)},
    )


def ops_arith() -> Case:
    """x (N, 6): Constant, MatMul, Sub, Div, Neg, Abs, Sqrt, Pow, Clip, Exp, Identity,
    Dropout, Sum."""
    g = GraphBuilder("ops_arith")
    g.nodes.append(
        helper.make_node(
            "Constant",
            [],
            ["offset"],
            name="offset",
            value=numpy_helper.from_array(np.linspace(-1, 1, 6, dtype=np.float32)),
        )
    )
    product = g.node("MatMul", ["x", g.weight("w", (6, 6))], "product")
    shifted = g.node("Sub", [product, "offset"], "shifted")
    scaled = g.node("Div", [shifted, g.scalar("four", 4.0)], "scaled")
    negated = g.node("Neg", [scaled], "negated")
    magnitude = g.node("Abs", [negated], "magnitude")
    lifted = g.node("Add", [magnitude, g.scalar("one", 1.0)], "lifted")
    root = g.node("Sqrt", [lifted], "root")
    squared = g.node("Pow", [scaled, g.scalar("two", 2.0)], "squared")
    clipped = g.node(
        "Clip",
        [scaled, g.scalar("low", -0.5), g.scalar("high", 0.75)],
        "clipped",
    )
    exponential = g.node("Exp", [clipped], "exponential")
    same = g.node("Identity", [exponential], "same")
    kept = g.node("Dropout", [same], "kept")
    g.node("Sum", [root, squared, kept, negated], "y")
    model = g.model([("x", ["N", 6])], [("y", ["N", 6]), ("clipped", ["N", 6])], opset=17)
    return _case("ops_arith", ops_arith.__doc__ or "", model, (6,))


def ops_activations() -> Case:
    """x (N, 8) -> MatMul + Add, then LeakyRelu, PRelu, Sigmoid, Tanh, Softplus, Elu, Selu,
    Gelu, Erf side by side, summed; outputs Softmax and LogSoftmax of the sum (opset 20)."""
    g = GraphBuilder("ops_activations")
    hidden = g.node(
        "Add",
        [g.node("MatMul", ["x", g.weight("w", (8, 8))], "product"), g.weight("b", (8,))],
        "hidden",
    )
    branches = [
        g.node("LeakyRelu", [hidden], "leaky_relu", alpha=0.2),
        g.node("PRelu", [hidden, g.weight("slope", (8,), scale=0.25)], "prelu"),
        g.node("Sigmoid", [hidden], "sigmoid"),
        g.node("Tanh", [hidden], "tanh"),
        g.node("Softplus", [hidden], "softplus"),
        g.node("Elu", [hidden], "elu", alpha=0.7),
        g.node("Selu", [hidden], "selu"),
        g.node("Gelu", [hidden], "gelu"),
        g.node("Erf", [hidden], "erf"),
    ]
    total = g.node("Sum", branches, "total")
    g.node("Softmax", [total], "softmax", axis=-1)
    g.node("LogSoftmax", [total], "log_softmax", axis=1)
    model = g.model([("x", ["N", 8])], [("softmax", ["N", 8]), ("log_softmax", ["N", 8])], 20)
    return _case("ops_activations", ops_activations.__doc__ or "", model, (8,))


def ops_layout() -> Case:
    """x (N, 2, 3, 4): Transpose, Reshape (with 0 and -1), Unsqueeze, Pad, Squeeze, Concat."""
    g = GraphBuilder("ops_layout")
    moved = g.node("Transpose", ["x"], "moved", perm=[0, 3, 1, 2])  # (N, 4, 2, 3)
    rows = g.node("Reshape", [moved, g.ints("rows_shape", [0, 4, 6])], "rows")  # (N, 4, 6)
    lifted = g.node("Unsqueeze", [rows, g.ints("lift_axes", [1])], "lifted")  # (N, 1, 4, 6)
    padded = g.node(
        "Pad",
        [lifted, g.ints("pads", [0, 0, 1, 0, 0, 0, 0, 2]), g.scalar("fill", 0.5)],
        "padded",
    )  # (N, 1, 5, 8)
    squeezed = g.node("Squeeze", [padded, g.ints("drop_axes", [1])], "squeezed")  # (N, 5, 8)
    flat = g.node("Reshape", ["x", g.ints("flat_shape", [-1, 3, 8])], "flat")  # (N, 3, 8)
    joined = g.node("Concat", [squeezed, flat], "joined", axis=1)  # (N, 8, 8)
    g.node("Transpose", [joined], "y", perm=[0, 2, 1])
    model = g.model([("x", ["N", 2, 3, 4])], [("y", ["N", 8, 8])], opset=17)
    return _case("ops_layout", ops_layout.__doc__ or "", model, (2, 3, 4))


def ops_conv1d_pool() -> Case:
    """x (N, 2, 16): Conv 1-D (pad 1) + Relu + MaxPool 1-D + GlobalAveragePool + Squeeze +
    Gemm; outputs the pooled features and the scores."""
    g = GraphBuilder("ops_conv1d_pool")
    conv = g.node(
        "Conv",
        ["x", g.weight("kernel", (3, 2, 3)), g.weight("kernel_bias", (3,))],
        "conv",
        kernel_shape=[3],
        pads=[1, 1],
        strides=[1],
    )  # (N, 3, 16)
    active = g.node("Relu", [conv], "active")
    g.node("MaxPool", [active], "features", kernel_shape=[2], strides=[2])  # (N, 3, 8)
    mean = g.node("GlobalAveragePool", ["features"], "mean")  # (N, 3, 1)
    flat = g.node("Squeeze", [mean, g.ints("drop_axes", [2])], "flat")  # (N, 3)
    g.node("Gemm", [flat, g.weight("w", (4, 3)), g.weight("b", (4,))], "scores", transB=1)
    model = g.model(
        [("x", ["N", 2, 16])], [("features", ["N", 3, 8]), ("scores", ["N", 4])], opset=17
    )
    return _case("ops_conv1d_pool", ops_conv1d_pool.__doc__ or "", model, (2, 16))


def ops_reductions() -> Case:
    """x (N, 4, 6): a layer norm from ReduceMean, Sub, Mul, Add, Sqrt, Div; then ReduceSum
    over axis 1 and ReduceMean over all but the batch axis (opset 18: axes as inputs)."""
    g = GraphBuilder("ops_reductions")
    last = g.ints("last_axis", [2])
    mean = g.node("ReduceMean", ["x", last], "mean", keepdims=1)  # (N, 4, 1)
    centered = g.node("Sub", ["x", mean], "centered")
    variance = g.node(
        "ReduceMean", [g.node("Mul", [centered, centered], "square"), last], "variance", keepdims=1
    )
    spread = g.node(
        "Sqrt",
        [g.node("Add", [variance, g.scalar("eps", 1e-5)], "var_eps")],
        "spread",
    )
    normed = g.node("Div", [centered, spread], "normed")
    weighted = g.node("Mul", [normed, g.weight("gain", (4, 1))], "weighted")
    g.node("ReduceSum", [weighted, g.ints("channel_axis", [1])], "summed", keepdims=0)  # (N, 6)
    g.node("ReduceMean", [weighted, g.ints("all_axes", [1, 2])], "energy", keepdims=0)  # (N,)
    model = g.model([("x", ["N", 4, 6])], [("summed", ["N", 6]), ("energy", ["N"])], opset=18)
    return _case("ops_reductions", ops_reductions.__doc__ or "", model, (4, 6))


OP_CASES: tuple[Callable[[], Case], ...] = (
    ops_arith,
    ops_activations,
    ops_layout,
    ops_conv1d_pool,
    ops_reductions,
)
