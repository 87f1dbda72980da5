"""Helpers of the CKKS tests: compile through the CKKS pipeline, reference outputs,
small ONNX models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

import fhec
from fhec.api import CompiledModel
from fhec.frontend import import_onnx
from fhec.ir.graph import Module
from fhec.ir.signature import Signature
from fhec.passes import PassContext, parse_pipeline, pipeline_for, run_pipeline
from fhec.runtime.calibration import calibration_samples

# Small, insecure parameters: fast, for the tests of behaviour (not of security).
FAST = {
    "select-params-ckks": "security=0,poly_degree=4096",
    "approximate-activations": "max_degree=7",
}


@dataclass(frozen=True)
class Compiled:
    module: Module
    signature: Signature
    notes: dict[str, str]


def ckks_pipeline(options: Mapping[str, str] | None = None) -> str:
    """The CKKS pipeline, with `{pass name: "opt=value,..."}` options spelled in."""
    options = options or {}
    return ",".join(
        f"{name}{{{options[name]}}}" if name in options else name for name in pipeline_for("ckks")
    )


def compile_ckks(
    model: onnx.ModelProto,
    calibration: Mapping[str, np.ndarray] | None,
    batch_size: int,
    options: Mapping[str, str] | None = None,
) -> Compiled:
    imported = import_onnx(model, batch_size=batch_size)
    samples = calibration_samples(imported.signature, calibration)
    context = PassContext(samples)
    module = run_pipeline(imported.module, parse_pipeline(ckks_pipeline(options)), context)
    return Compiled(module, imported.signature, context.notes)


def reference(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs: the ground truth every backend is checked against."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs)), strict=True))


def tiny_model(
    nodes: list[onnx.NodeProto],
    initializers: Mapping[str, np.ndarray],
    features: int = 4,
    outputs: int = 3,
) -> onnx.ModelProto:
    """An ONNX model x (N, features) -> y (N, outputs) of the given nodes."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(_float32(v), k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _float32(value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def golden_single(golden: Path, samples: int = 2) -> tuple[CompiledModel, dict[str, object]]:
    """A golden model compiled for one sample per run at 128 bits, its report; asserts
    that its first `samples` held-out samples decrypt within the predicted bound of the
    reference backend's logits, with the same classes."""
    calibration = dict(np.load(golden / "calibration.npz"))
    inputs = {"input": dict(np.load(golden / "inputs.npz"))["input"][:samples]}
    model = fhec.compile(
        golden / "model.onnx", backend="ckks", calibration=calibration, batch_size=1,
        options={"pack-slots-ckks": {"layout": "single"}},
    )  # fmt: skip
    assert model.circuit is not None
    report = model.circuit.report()
    assert report["layout"] == "single" and report["security_bits"] == 128
    encrypted = model.run(inputs)["logits"]
    reference = fhec.compile(golden / "model.onnx", backend="reference").run(inputs)["logits"]
    assert np.max(np.abs(encrypted - reference)) <= model.error_bound["logits"]
    assert np.array_equal(encrypted.argmax(1), reference.argmax(1))
    return model, report
