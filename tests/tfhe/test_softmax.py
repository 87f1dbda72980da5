"""Softmax and LogSoftmax between encrypted layers: exp(x - max) through lookups, the
sum, and log S through one lookup (passes/tfhe_softmax.py); real concrete, no mocks."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from tfhe_helpers import build, lower, one_by_one, samples

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.ops.linalg import MatMulOp
from fhec.ir.ops.nn import LogSoftmaxOp, SoftmaxOp
from fhec.ir.ops.tfhe import BitWidth, LookupOp, RoundOp

CALIBRATION = {"x": samples(200)}
HELD_OUT = {"x": samples(100, seed=5)}
EXACT = {"quantize_tfhe": "bits=4", "round_accumulators": "bits=5,approximate=false,max_bits=0"}


class SoftmaxThenLinear(torch.nn.Module):
    """Linear(8, 6) -> Softmax (or LogSoftmax) -> Linear(6, out)."""

    def __init__(self, log: bool, identity: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.log = log
        self.first = torch.nn.Linear(8, 6)
        self.second = torch.nn.Linear(6, 6 if identity else 3)
        with torch.no_grad():
            self.first.weight.mul_(3.0)  # logits spread over a few units
            if identity:  # the outputs are the softmax itself
                self.second.weight.copy_(torch.eye(6))
                self.second.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        h = torch.log_softmax(h, -1) if self.log else torch.softmax(h, -1)
        return self.second(h)


def torch_model(log: bool = False, identity: bool = False) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(
        SoftmaxThenLinear(log, identity).eval(), (torch.randn(1, 8),), buffer, dynamo=False,
        opset_version=17, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
    )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def onnxruntime(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString())
    return np.asarray(session.run(None, inputs)[0])


def _lookup_sizes(lowered: object) -> list[int]:
    graph = lowered.module.graph  # type: ignore[attr-defined]
    return [graph.node(v).type.size for v in graph if isinstance(graph.node(v).op, LookupOp)]


def test_softmax_between_layers_becomes_lookups_and_integer_sums() -> None:
    lowered = lower(torch_model(), CALIBRATION)
    graph = lowered.module.graph
    assert not any(isinstance(graph.node(v).op, SoftmaxOp) for v in graph)
    # per sample: the first layer's 6 requantizations, 3 + 2 + 1 maxima (6 -> 3 -> 2 -> 1
    # columns, the odd one paired with itself), 6 exponentials, 1 log of the sum, and
    # the 6 exp(z) requantized for the second layer
    assert sorted(_lookup_sizes(lowered)) == sorted([6, 3, 2, 1, 6, 1, 6])
    sources = [graph.node(graph.operands(v)[0]).op for v in graph
               if isinstance(graph.node(v).op, LookupOp)]  # fmt: skip
    # only accumulators are rounded: the first layer's and the sum of exponentials
    assert sum(isinstance(op, RoundOp) for op in sources) == 2


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_values_are_within_the_stated_error(log: bool) -> None:
    """An identity second layer shows the (log-)softmax itself: its exponent is off by
    at most 2.5 steps s of the logits' quantizer plus the relative error of the sum
    (the module docstring of passes/tfhe_softmax.py), then the next quantizer rounds."""
    model = torch_model(log=log, identity=True)
    x = CALIBRATION["x"][:100]  # inside the calibrated range: no clipping
    expected = onnxruntime(model, {"x": x})
    got = lower(model, CALIBRATION).run({"x": x})["y"]
    with torch.no_grad():
        first = SoftmaxThenLinear(log, identity=True).first
        logits = first(torch.from_numpy(CALIBRATION["x"])).numpy()
    step = (logits.max() - logits.min()) / 63  # the logits' 6-bit quantizer
    exponent = 2.5 * step + 6 / 128 + 2**-5  # 6 terms rounded at 6 bits; S rounded to 6 bits
    output_step = (expected.max() - expected.min()) / 63  # the second layer's quantizer
    if log:
        assert np.abs(got - expected).max() <= exponent + output_step
    else:
        bound = expected * np.expm1(exponent) + output_step
        assert np.all(np.abs(got - expected) <= bound)
    assert np.abs(got - expected).max() > 0  # computed on the integers, not in float


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_a_torch_softmax_then_linear_keeps_the_quantized_models_accuracy(log: bool) -> None:
    model = torch_model(log=log)
    x = HELD_OUT["x"]
    expected = onnxruntime(model, {"x": x})
    integer = lower(model, CALIBRATION).run({"x": x})["y"]
    # the quantized model with an exact float softmax: the error quantization alone makes
    quantized = lower(model, CALIBRATION, until="quantize-tfhe").run({"x": x})["y"]
    quantization_error = np.abs(quantized - expected).max()
    assert np.abs(integer - expected).max() <= 3 * quantization_error
    agree = np.mean(integer.argmax(-1) == expected.argmax(-1))
    assert agree >= np.mean(quantized.argmax(-1) == expected.argmax(-1)) - 0.05


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return build(torch_model(), CALIBRATION, **EXACT)


def test_a_softmax_model_simulates_the_integer_model_exactly(tiny: tuple[object, object]) -> None:
    lowered, circuit = tiny
    clear = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    np.testing.assert_array_equal(one_by_one(circuit, HELD_OUT, "simulate", 10)["y"], clear[:10])
    assert circuit.report()["lookups"] == sum(_lookup_sizes(lowered))  # type: ignore[attr-defined]


def test_a_softmax_model_runs_encrypted_exactly(tiny: tuple[object, object]) -> None:
    lowered, circuit = tiny
    clear = lowered.run(HELD_OUT)["y"]  # type: ignore[attr-defined]
    simulated = one_by_one(circuit, HELD_OUT, "simulate", 1)["y"]
    executed = one_by_one(circuit, HELD_OUT, "execute", 1)["y"]  # real keys and encryption
    np.testing.assert_array_equal(executed, simulated)
    np.testing.assert_array_equal(executed, clear[:1])


def test_a_final_softmax_stays_with_the_client() -> None:
    """After the last layer a softmax costs nothing encrypted: the client computes it."""
    model = torch_model()
    graph = model.graph
    graph.node.append(helper.make_node("Softmax", ["y"], ["p"], name="final", axis=-1))
    graph.output[0].name = "p"
    lowered = lower(model, CALIBRATION)
    ops = [lowered.module.graph.node(v).op for v in lowered.module.graph]
    assert sum(isinstance(op, SoftmaxOp) for op in ops) == 1  # the final one, in float
    np.testing.assert_allclose(lowered.run(HELD_OUT)["p"].sum(-1), 1.0, rtol=1e-5)


def test_a_softmax_over_another_axis_between_layers_is_refused() -> None:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"], name="first"),
        helper.make_node("Softmax", ["h"], ["s"], name="columns", axis=1),
        helper.make_node("MatMul", ["s", "w1"], ["y"], name="second"),
    ]
    weights = [
        numpy_helper.from_array(rng.normal(0, 1, (4, 3)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.normal(0, 1, (3, 2)).astype(np.float32), "w1"),
    ]
    graph = helper.make_graph(
        nodes,
        "columns",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 2])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    calibration = {"x": samples(32, features=8).reshape(32, 2, 4)}
    with pytest.raises(CompileError, match=r"Softmax over axis 1 .* only over the last axis") as e:
        lower(model, calibration)
    assert "columns" in str(e.value)


def test_log_softmax_between_layers_is_lowered_too() -> None:
    lowered = lower(torch_model(log=True), CALIBRATION)
    graph = lowered.module.graph
    assert not any(isinstance(graph.node(v).op, LogSoftmaxOp) for v in graph)


@pytest.mark.parametrize("bits", [1, 17])
def test_softmax_bits_out_of_range_are_refused(bits: int) -> None:
    with pytest.raises(FhecError, match=f"softmax_bits={bits} is out of range"):
        lower(torch_model(), CALIBRATION, lower_to_integer=f"softmax_bits={bits}")


def test_more_softmax_bits_make_it_closer() -> None:
    model = torch_model(identity=True)
    x = CALIBRATION["x"][:100]
    expected = onnxruntime(model, {"x": x})
    errors = [
        np.abs(lower(model, CALIBRATION, lower_to_integer=f"softmax_bits={b}").run({"x": x})["y"]
               - expected).mean()
        for b in (4, 8)
    ]  # fmt: skip
    assert errors[1] < errors[0]


def test_softmax_integers_are_as_wide_as_their_bounds_not_only_as_calibration(
    tiny: tuple[object, object],
) -> None:
    """Logits spread wider than calibration ever saw between the columns a max compares
    (and flat ones, whose exponentials sum to C (2^n - 1)): every softmax integer has
    the width of its bounds by construction, so the circuit never overflows on them."""
    lowered, circuit = tiny
    net = SoftmaxThenLinear(log=False, identity=False)
    calibrated = CALIBRATION["x"]
    candidates = (
        np.random.default_rng(3)
        .uniform(calibrated.min(), calibrated.max(), (4000, 8))
        .astype(np.float32)
    )
    with torch.no_grad():
        logits = net.first(torch.from_numpy(candidates)).numpy()
    # the max's second level compares max(y2, y5) with max(y0, y3)
    gap = logits[:, [2, 5]].max(1) - logits[:, [0, 3]].max(1)
    spread = logits.max(1) - logits.min(1)
    x = candidates[[gap.argmax(), gap.argmin(), spread.argmin()]]
    graph = lowered.module.graph  # type: ignore[attr-defined]
    sums = [v for v in graph if graph.node(v).location.op_type == "Softmax"
            and graph.node(v).type.shape == (1, 1) and isinstance(graph.node(v).op, MatMulOp)
            and graph.node(graph.operands(v)[0]).type.shape == (1, 6)]  # fmt: skip
    (total,) = sums
    assert graph.node(total).annotation(BitWidth) == BitWidth(7, False)  # 6 * 15 = 90
    clear = lowered.run({"x": x})["y"]  # type: ignore[attr-defined]
    executed = one_by_one(circuit, {"x": x}, "execute", 3)["y"]
    np.testing.assert_array_equal(executed, clear)
