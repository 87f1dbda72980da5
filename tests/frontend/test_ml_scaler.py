"""ai.onnx.ml Scaler, as skl2onnx exports a StandardScaler inside a Pipeline."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import skl2onnx
from onnx import TensorProto, helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import fhec


@pytest.mark.parametrize("scaler", [StandardScaler, MinMaxScaler])
def test_scaler_pipeline_matches_onnxruntime(scaler: type) -> None:
    features, _ = load_breast_cancer(return_X_y=True)
    x = features.astype(np.float32)
    target = x[:, 0] * 0.5 - x[:, 3] * 0.01
    model = make_pipeline(scaler(), LinearRegression()).fit(x, target)
    proto = skl2onnx.to_onnx(model, x[:1])
    # StandardScaler exports as ai.onnx.ml Scaler; MinMaxScaler as Mul and Add.
    assert ("Scaler" in [n.op_type for n in proto.graph.node]) == (scaler is StandardScaler)
    name = proto.graph.input[0].name
    expected = ort.InferenceSession(proto.SerializeToString()).run(None, {name: x[:50]})[0]
    got = fhec.compile(proto).run({name: x[:50]})
    np.testing.assert_allclose(got[proto.graph.output[0].name], expected, rtol=1e-4, atol=1e-4)


def test_scaler_with_wrong_offset_count_names_the_node() -> None:
    node = helper.make_node(
        "Scaler", ["x"], ["y"], name="scale_me", domain="ai.onnx.ml",
        offset=[0.0, 1.0], scale=[1.0, 2.0, 3.0],
    )
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    with pytest.raises(fhec.CompileError, match=r"node 'scale_me' \(Scaler\): offset has 2 values"):
        fhec.compile(model)
