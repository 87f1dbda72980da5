"""The TFHE passes on small models: what each establishes, in the IR text and in numbers
(reference backend, no concrete), and the errors they raise."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from tfhe_helpers import conv_model, gemm_model, lower, samples

import fhec
from fhec.ir.errors import CompileError, FhecError
from fhec.ir.ops.tfhe import BitWidth, LookupOp, QuantizeOp, RoundOp
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.passes import PassContext, parse_pipeline, pipeline_for, run_pipeline
from fhec.passes.round_accumulators import lsbs_to_remove, rounded_width

TEST = {"x": samples(300, seed=7)}


def ops(text: str) -> list[str]:
    return re.findall(r"= ([a-z_]+\.[a-z_]+)\(", text)


def float_outputs(model: onnx.ModelProto) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, TEST)[0]


# -- quantize-tfhe --------------------------------------------------------------------


def test_quantize_inserts_one_quantizer_pair_per_layer_input_and_integer_weights(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    text = print_module(lower(toy, toy_calibration, until="quantize-tfhe").module)
    # the input x and the ReLU output each get a quantizer; weights are i64 constants
    assert ops(text).count("tfhe.quantize") == 2
    assert re.search(r"tensor.constant\(\) \{value = dense<8x6xi64", text)
    assert re.search(
        r"tfhe.quantize\(%0\) \{scale = \[[0-9.e-]+\], zero_point = \[\d+\], "
        r"axis = -1, bits = 6, signed = false\}",
        text,
    )
    # per output channel weight scales: 6 of them for gemm0
    scales = re.search(r"tfhe.dequantize\(%\d+\) \{scale = \[([^]]*)\].*tensor<8x6xf32>", text)
    assert scales is not None and len(scales.group(1).split(",")) == 6


def test_the_quantized_model_stays_close_to_the_float_model(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    reference = float_outputs(toy)
    for bits, bound in ((4, 0.6), (6, 0.15), (8, 0.04)):
        qdq = lower(toy, toy_calibration, until="quantize-tfhe", quantize_tfhe=f"bits={bits}")
        error = np.abs(qdq.run(TEST)["y"] - reference).max()
        assert error < bound, (bits, error)


def test_quantize_options_symmetric_per_tensor_and_input_bits(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    options = "bits=5,input_bits=7,scheme=symmetric,per_channel=false"
    module = lower(toy, toy_calibration, until="quantize-tfhe", quantize_tfhe=options).module
    quantizers = [module.graph.node(v).op for v in module.graph]
    quantizers = [op for op in quantizers if isinstance(op, QuantizeOp)]
    # x spans negative values: signed, zero point 0; the ReLU output is non-negative
    assert [(q.bits, q.signed, q.zero_point) for q in quantizers] == [
        (7, True, (0,)),
        (5, False, (0,)),
    ]
    text = print_module(module)
    assert not re.search(
        r"tfhe.dequantize\(%\d+\) \{scale = \[[^]]*,[^]]*\].*tensor<8x6xf32>", text
    )


def test_per_channel_activations_move_their_scales_into_the_weights(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    options = "per_channel_activations=true"
    qdq = lower(toy, toy_calibration, until="quantize-tfhe", quantize_tfhe=options)
    first = next(
        qdq.module.graph.node(v).op
        for v in qdq.module.graph
        if isinstance(qdq.module.graph.node(v).op, QuantizeOp)
    )
    assert len(first.scale) == 8 and len(set(first.scale)) == 8
    assert "tfhe.dequantize(%" in print_module(qdq.module)
    assert re.search(
        r"scale = \[1\.0, 1\.0, 1\.0, 1\.0, 1\.0, 1\.0, 1\.0, 1\.0\]", print_module(qdq.module)
    )
    # held-out samples go past some features' calibrated ranges (clipped), hence the median
    assert np.median(np.abs(qdq.run(TEST)["y"] - float_outputs(toy))) < 0.03


@pytest.mark.parametrize("options", ["bits=1", "bits=17", "weight_bits=20", "input_bits=1"])
def test_quantize_refuses_bit_counts_concrete_cannot_take(options: str) -> None:
    with pytest.raises(FhecError, match="out of range"):
        lower(gemm_model(), {"x": samples(8)}, quantize_tfhe=options)


def test_quantize_needs_calibration_data(toy: onnx.ModelProto) -> None:
    with pytest.raises(CompileError, match=r"node 'gemm0' \(Gemm\).*calibration data"):
        lower(toy, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("pads", [0, 1])
def test_conv_pool_and_flatten_lower_to_integers(pads: int) -> None:
    model = conv_model(pads=pads)
    # inputs with negative values: an asymmetric quantizer with a nonzero zero point,
    # which the padding must write (the integer for float 0)
    calibration = {"x": samples(64, features=36).reshape(64, 1, 6, 6)}
    held_out = {"x": samples(50, features=36, seed=5).reshape(50, 1, 6, 6)}
    qdq = lower(model, calibration, until="quantize-tfhe").run(held_out)["y"]
    integer = lower(model, calibration, until="lower-to-integer")
    np.testing.assert_allclose(integer.run(held_out)["y"], qdq, atol=1e-5)
    text = print_module(integer.module)
    expected = ["tfhe.quantize", "linalg.conv", "tfhe.lookup", "linalg.conv", "tensor.reshape",
                "linalg.matmul", "tfhe.dequantize", "arith.add"]  # fmt: skip
    if pads:
        expected.insert(1, "tensor.pad")
        assert re.search(r"tensor.pad\(%\d+\) \{pads = \[0, 0, 1, 1, 0, 0, 1, 1\], value = "
                         r"[1-9]\d*\.0\}", text)  # fmt: skip
    assert [op for op in ops(text) if op not in ("func.input", "tensor.constant")] == expected
    # the average pool is a window sum: a grouped convolution by ones, 1/4 in the scale
    assert re.search(
        r"linalg.conv\(%\d+, %\d+\) \{strides = \[2, 2\], pads = \[0, 0, 0, 0\], "
        r'dilations = \[1, 1\], group = 2\}.*loc\("pool", "AveragePool"\)',
        text,
    )
    float_y = ort.InferenceSession(model.SerializeToString()).run(None, held_out)[0]
    assert np.abs(integer.run(held_out)["y"] - float_y).max() < 0.2  # outputs reach 2.5


def test_average_pools_with_padding_between_layers_are_refused() -> None:
    calibration = {"x": samples(16, features=36).reshape(16, 1, 6, 6)}
    with pytest.raises(CompileError, match=r"node 'pool' \(AveragePool\): AveragePool with pad"):
        lower(conv_model(pool_pads=1), calibration)


# -- lower-to-integer -----------------------------------------------------------------


def test_lowering_fuses_requantization_and_relu_into_one_lookup(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    text = print_module(lower(toy, toy_calibration, until="lower-to-integer").module)
    assert ops(text) == [
        "func.input",
        "tfhe.quantize",
        "tensor.constant",
        "linalg.matmul",
        "tensor.constant",
        "tensor.constant",
        "tfhe.lookup",
        "linalg.matmul",
        "tfhe.dequantize",
        "arith.add",
    ]
    assert re.search(r"linalg.matmul\(%1, %2\) : tensor<1x6xi64, secret>", text)
    # one table per channel of gemm0's output (its scales and biases differ)
    assert re.search(
        r'tfhe.lookup\(%\d+\) \{thresholds = dense<1x6x\d+xi64.*loc\("act0", "Relu"\)', text
    )


def test_the_integer_module_computes_what_the_quantized_model_does(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    qdq = lower(toy, toy_calibration, until="quantize-tfhe").run(TEST)["y"]
    integer = lower(toy, toy_calibration, until="lower-to-integer").run(TEST)["y"]
    np.testing.assert_allclose(integer, qdq, atol=1e-5)


@pytest.mark.parametrize(
    ("activation", "bound"), [("Sigmoid", 0.1), ("Tanh", 0.3), ("Elu", 0.4), ("Softplus", 0.3)]
)
def test_any_univariate_activation_becomes_one_lookup(
    activation: str, bound: float, toy_calibration: dict[str, np.ndarray]
) -> None:
    model = gemm_model(activation=activation)
    lowered = lower(model, toy_calibration)
    assert ops(print_module(lowered.module)).count("tfhe.lookup") == 1
    assert np.abs(lowered.run(TEST)["y"] - float_outputs(model)).max() < bound


def test_a_chain_of_univariate_ops_with_constants_is_still_one_lookup(
    toy_calibration: dict[str, np.ndarray],
) -> None:
    scale = numpy_helper.from_array(np.linspace(0.5, 2.0, 6).astype(np.float32), "s")
    between = [
        helper.make_node("Relu", ["h0"], ["r0"], name="relu"),
        helper.make_node("Mul", ["r0", "s"], ["m0"], name="scale"),
        helper.make_node("Sigmoid", ["m0"], ["a0"], name="squash"),
    ]
    model = gemm_model(between=between)
    model.graph.initializer.append(scale)
    # 6-bit lookups: at the default 5 (this toy's rounding error, 0.064 relative, is
    # under round-accumulators' target) the steepest sigmoid is off by up to 0.15
    lowered = lower(model, toy_calibration, round_accumulators="bits=6")
    text = print_module(lowered.module)
    assert ops(text).count("tfhe.lookup") == 1 and "nn.sigmoid" not in text
    assert re.search(r'tfhe.lookup.*loc\("squash", "Sigmoid"\)', text)
    assert np.abs(lowered.run(TEST)["y"] - float_outputs(model)).max() < 0.1


def test_a_non_univariate_op_between_layers_is_named(
    toy_calibration: dict[str, np.ndarray],
) -> None:
    # a product of two encrypted values (a Softmax is lowered: tests/tfhe/test_softmax.py)
    between = [helper.make_node("Mul", ["h0", "h0"], ["a0"], name="square")]
    with pytest.raises(CompileError, match=r"node 'square' \(Mul\): arith\.mul cannot be"):
        lower(gemm_model(between=between), toy_calibration)


def test_encrypted_weights_are_refused() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], name="flip"),
            helper.make_node("MatMul", ["x", "t"], ["y"], name="gram"),
        ],
        "gram",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match=r"node 'gram' \(MatMul\): .*two encrypted tensors"):
        lower(model, {"x": samples(4, features=4)})


def test_a_model_without_layers_has_nothing_to_encrypt() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="only")],
        "relu",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match="no layer to compute on encrypted data"):
        lower(model, {"x": samples(4, features=4)})


def test_lowering_needs_the_quantized_form(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    names = [n for n in pipeline_for("tfhe") if n != "quantize-tfhe"]
    with pytest.raises(
        CompileError,
        match=r"node 'gemm0' \(Gemm\): the weights of this layer "
        "are not quantized; run quantize-tfhe",
    ):
        fhec.compile(toy, calibration=toy_calibration, pipeline=names)


def test_integer_passes_need_calibration_data(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    module = lower(toy, toy_calibration, until="lower-to-integer").module
    for name in ("round-accumulators", "annotate-bit-widths"):
        with pytest.raises(CompileError, match="need calibration data"):
            run_pipeline(module, parse_pipeline(name), PassContext())


@pytest.mark.parametrize("table_bits", [7, 25])
def test_lower_refuses_table_bits_out_of_range(table_bits: int) -> None:
    with pytest.raises(FhecError, match="table_bits"):
        lower(gemm_model(), {"x": samples(8)}, lower_to_integer=f"table_bits={table_bits}")


# -- round-accumulators and annotate-bit-widths ------------------------------------------


def test_rounding_keeps_the_bit_budget_and_counts_rounding_overflow() -> None:
    assert lsbs_to_remove(range(-534, 338), 5) == 6  # 11 bits -> 5
    assert lsbs_to_remove(range(0, 60), 6) == 0  # already narrow
    # 1019 rounds up to 1024: 11 bits hold the rounded values, so one more bit goes
    assert rounded_width(range(0, 1020), 6) == 11
    assert lsbs_to_remove(range(0, 1020), 4) == 7


@pytest.mark.parametrize("budget", [4, 5, 6])
def test_every_lookup_reads_at_most_the_budget(
    budget: int, toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    # max_bits=0: no lookup widened past the budget (tests/tfhe/test_mixed_precision.py)
    options = f"bits={budget},max_bits=0"
    module = lower(toy, toy_calibration, round_accumulators=options).module
    graph = module.graph
    lookups = [v for v in graph if isinstance(graph.node(v).op, LookupOp)]
    assert lookups
    for lookup in lookups:
        source = graph.node(graph.operands(lookup)[0])
        assert isinstance(source.op, RoundOp)
        width = source.annotation(BitWidth)
        assert width is not None and width.width <= budget


def test_no_rounding_with_a_zero_budget(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    text = print_module(lower(toy, toy_calibration, round_accumulators="bits=0").module)
    assert "tfhe.round" not in text


def test_bit_widths_annotate_every_encrypted_integer(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    module = lower(toy, toy_calibration).module
    graph = module.graph
    for value in graph:
        node = graph.node(value)
        if node.type.dtype.is_float or not node.type.secret:
            continue
        width = node.annotation(BitWidth)
        assert width is not None, node.op.name
        if isinstance(node.op, QuantizeOp):
            assert (width.width, width.signed) == (node.op.bits, node.op.signed)
    text = print_module(module)
    assert re.search(
        r"linalg.matmul\(%1, %2\) : tensor<1x6xi64, secret> #bits\{width = 1\d, "
        r"signed = true\} #range",
        text,
    )


def test_too_wide_accumulators_name_the_layer_and_the_width(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    with pytest.raises(CompileError) as caught:
        lower(toy, toy_calibration, quantize_tfhe="bits=9", round_accumulators="bits=0")
    message = str(caught.value)
    assert message.startswith("node 'gemm0' (Gemm): this layer's accumulator needs ")
    width = int(re.search(r"needs (\d+) bits", message).group(1))  # type: ignore[union-attr]
    assert width > 16
    assert "node 'act0' (Relu)" in message and "at most 16 bits" in message
    assert "fewer bits" in message and "round-accumulators" in message


def test_round_accumulators_refuses_a_budget_out_of_range() -> None:
    with pytest.raises(FhecError, match="out of range"):
        lower(gemm_model(), {"x": samples(8)}, round_accumulators="bits=17")


def test_the_tfhe_module_round_trips_through_text(
    toy: onnx.ModelProto, toy_calibration: dict[str, np.ndarray]
) -> None:
    module = lower(toy, toy_calibration).module
    assert parse_module(print_module(module)) == module
