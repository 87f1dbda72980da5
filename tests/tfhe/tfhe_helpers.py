"""Models, data and compile helpers for the TFHE tests (real concrete, no mocks)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fhec
from fhec.api import CompiledModel
from fhec.passes import pipeline_for

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def tfhe_pipeline(**options: str) -> list[str]:
    """The tfhe pipeline with options for some passes, e.g. quantize_tfhe="bits=4"."""
    names = []
    for name in pipeline_for("tfhe"):
        spelled = options.get(name.replace("-", "_"))
        names.append(f"{name}{{{spelled}}}" if spelled else name)
    return names


def lower(
    model: onnx.ModelProto | str | Path,
    calibration: dict[str, np.ndarray] | None,
    until: str | None = None,
    **options: str,
) -> CompiledModel:
    """The model through the tfhe pipeline (up to pass `until`), run by the reference
    backend: the integer module the circuit computes, in clear."""
    names = tfhe_pipeline(**options)
    if until is not None:
        names = names[: [n.split("{")[0] for n in names].index(until) + 1]
    return fhec.compile(model, backend="reference", calibration=calibration, pipeline=names)


def build(
    model: onnx.ModelProto | str | Path,
    calibration: dict[str, np.ndarray],
    config: dict[str, object] | None = None,
    **options: str,
) -> tuple[CompiledModel, object]:
    """The lowered model and its TFHE circuit (what fhec.compile(backend="tfhe") builds)."""
    from fhec.backends.tfhe import TFHE_BACKEND
    from fhec.runtime.calibration import calibration_samples

    lowered = lower(model, calibration, **options)
    samples = calibration_samples(lowered.signature, calibration)
    circuit = TFHE_BACKEND.build(
        lowered.module, lowered.signature, {"calibration": samples, **(config or {})}
    )
    return lowered, circuit


def gemm_model(
    sizes: Sequence[int] = (8, 6, 3),
    activation: str | None = "Relu",
    seed: int = 0,
    between: Sequence[onnx.NodeProto] = (),
) -> onnx.ModelProto:
    """x (N, sizes[0]) -> Gemm -> activation -> Gemm ... -> y: no activation after the
    last layer. `between` replaces the activation nodes (reading "h{i}", writing "a{i}")."""
    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = "x"
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weights = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, fan_out)).astype(np.float32)
        bias = rng.normal(0, 0.1, fan_out).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weights, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        last = index == len(sizes) - 2
        out = "y" if last else f"h{index}"
        nodes.append(
            helper.make_node(
                "Gemm", [current, f"w{index}", f"b{index}"], [out], name=f"gemm{index}"
            )
        )
        current = out
        if not last and between:
            nodes += list(between)
            current = f"a{index}"
        elif not last and activation:
            nodes.append(helper.make_node(activation, [out], [f"a{index}"], name=f"act{index}"))
            current = f"a{index}"
    graph = helper.make_graph(
        nodes,
        "gemm_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def samples(count: int, features: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (count, features)).astype(np.float32)


def golden(case: str) -> tuple[Path, dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """A golden case: model path, held-out inputs, their labels, calibration samples."""
    inputs = dict(np.load(GOLDEN / case / "inputs.npz"))
    labels = inputs.pop("label")
    calibration = dict(np.load(GOLDEN / case / "calibration.npz"))
    return GOLDEN / case / "model.onnx", inputs, labels, calibration


def one_by_one(
    circuit: object, inputs: dict[str, np.ndarray], mode: str, count: int
) -> dict[str, np.ndarray]:
    """The circuit on the first `count` samples, one compiled batch (1) at a time."""
    pieces = [
        circuit.run({k: v[i : i + 1] for k, v in inputs.items()}, mode)  # type: ignore[attr-defined]
        for i in range(count)
    ]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def conv_model(
    pads: int = 1,
    pool_pads: int = 0,
    seed: int = 0,
    pool: str = "AveragePool",
    **pool_attributes: object,
) -> onnx.ModelProto:
    """x (N, 1, 6, 6) -> Conv 3x3 (2 channels) -> Relu -> `pool` 2x2 (stride 2) ->
    Flatten -> Gemm."""
    rng = np.random.default_rng(seed)
    side = 6 + 2 * pads - 2  # after the 3x3 convolution
    pooled = (side + 2 * pool_pads - 2) // 2 + 1
    initializers = [
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "k"),
        numpy_helper.from_array(rng.normal(0, 0.1, 2).astype(np.float32), "kb"),
        numpy_helper.from_array(
            rng.normal(0, 0.3, (2 * pooled * pooled, 3)).astype(np.float32), "w"
        ),
        numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "k", "kb"], ["c"], name="conv", pads=[pads] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node(pool, ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2], pads=[pool_pads] * 4, **pool_attributes),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="dense"),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "conv_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
