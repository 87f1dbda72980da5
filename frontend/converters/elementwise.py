"""Converters for elementwise arithmetic, math, activations, and the pass-through ops.

Each registers the schema version in force at opset 13 (models are upgraded to 13
first); later versions of these ops only add element types, which the importer checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.common import broadcast_shape
from fhec.ir.ops.elementwise import (
    AbsOp,
    AddOp,
    ClipOp,
    DivOp,
    EluOp,
    ErfOp,
    ExpOp,
    GeluApproximation,
    GeluOp,
    LeakyReluOp,
    MulOp,
    NegOp,
    PowOp,
    PReluOp,
    ReluOp,
    SeluOp,
    SigmoidOp,
    SoftplusOp,
    SqrtOp,
    SubOp,
    TanhOp,
)
from fhec.ir.types import DType

# -- arithmetic -------------------------------------------------------------------


@converter("Add", since=13)
def convert_add(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(AddOp(), ctx.input(0), ctx.input(1))]


@converter("Sub", since=13)
def convert_sub(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SubOp(), ctx.input(0), ctx.input(1))]


@converter("Mul", since=13)
def convert_mul(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(MulOp(), ctx.input(0), ctx.input(1))]


@converter("Div", since=13, notes="integer division truncates toward zero")
def convert_div(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    dividend, divisor = ctx.input(0), ctx.input(1)
    truncate = not ctx.type_of(dividend).dtype.is_float
    return [ctx.emit(DivOp(truncate=truncate), dividend, divisor)]


@converter("Sum", since=13, notes="a chain of additions")
def convert_sum(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    terms = ctx.inputs()
    total = terms[0]
    for term in terms[1:]:
        total = ctx.emit(AddOp(), total, term)
    return [total]


@converter("Neg", since=13)
def convert_neg(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(NegOp(), ctx.input(0))]


@converter("Abs", since=13)
def convert_abs(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(AbsOp(), ctx.input(0))]


@converter(
    "Pow",
    since=13,
    notes="constant exponent, one value for all elements; integer bases: whole exponents >= 0",
)
def convert_pow(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    base, exponent = ctx.input(0), ctx.constant_value(ctx.input(1))
    if exponent is None:
        raise ctx.error(
            f"the exponent (input 1, {node.input[1]!r}) must be a constant",
            hint="fold it into an initializer before export, or use Mul / Exp and Log",
        )
    distinct = np.unique(exponent)
    if distinct.size != 1:
        raise ctx.error(
            f"the exponent takes {distinct.size} different values; fhec supports one "
            "exponent for all elements",
            hint="split the tensor by exponent, or use Mul for small integer powers",
        )
    base_shape = ctx.type_of(base).shape
    if broadcast_shape([base_shape, exponent.shape]) != base_shape:
        raise ctx.error(
            f"the exponent of shape {exponent.shape} broadcasts the base of shape "
            f"{base_shape} to a larger shape",
            hint="give the exponent as a scalar",
        )
    return [ctx.emit(PowOp(float(distinct[0])), base)]


@converter("Sqrt", since=13)
def convert_sqrt(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SqrtOp(), ctx.input(0))]


@converter("Exp", since=13)
def convert_exp(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(ExpOp(), ctx.input(0))]


@converter("Erf", since=13, notes="floating-point tensors only")
def convert_erf(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(ErfOp(), ctx.input(0))]


# -- activations --------------------------------------------------------------------


@converter("Relu", since=13)
def convert_relu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(ReluOp(), ctx.input(0))]


@converter("LeakyRelu", since=6)
def convert_leaky_relu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(LeakyReluOp(alpha=float(ctx.attr("alpha", 0.01))), ctx.input(0))]


@converter("PRelu", since=9, notes="slope broadcast to the input's shape")
def convert_prelu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(PReluOp(), ctx.input(0), ctx.input(1))]


@converter("Sigmoid", since=13)
def convert_sigmoid(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SigmoidOp(), ctx.input(0))]


@converter("Tanh", since=13)
def convert_tanh(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(TanhOp(), ctx.input(0))]


@converter("Softplus", since=1)
def convert_softplus(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SoftplusOp(), ctx.input(0))]


@converter("Elu", since=6)
def convert_elu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(EluOp(alpha=float(ctx.attr("alpha", 1.0))), ctx.input(0))]


@converter("Selu", since=6)
def convert_selu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    default = SeluOp()
    op = SeluOp(
        alpha=float(ctx.attr("alpha", default.alpha)),
        gamma=float(ctx.attr("gamma", default.gamma)),
    )
    return [ctx.emit(op, ctx.input(0))]


@converter("Gelu", since=20, notes='approximate "none" or "tanh"')
def convert_gelu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    approximate = ctx.attr("approximate", "none")
    if approximate not in {mode.value for mode in GeluApproximation}:
        raise ctx.error(
            f"attribute approximate={approximate!r} is not one ONNX defines",
            hint='use "none" or "tanh"',
        )
    return [ctx.emit(GeluOp(GeluApproximation(approximate)), ctx.input(0))]


@converter("Clip", since=13, notes="min and max must be constant scalars (or omitted)")
def convert_clip(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    low, high = _clip_bound(ctx, 1, "min"), _clip_bound(ctx, 2, "max")
    return [ctx.emit(ClipOp(low=low, high=high), ctx.input(0))]


def _clip_bound(ctx: ConversionContext, index: int, what: str) -> float | None:
    array = ctx.require_constant(index, f"the {what} bound")
    if array is None:
        return None
    if array.size != 1:
        raise ctx.error(f"the {what} bound has shape {array.shape}; Clip takes a scalar")
    value = array.reshape(-1)[0].item()
    if float(value) != value:  # an int64 beyond 2**53 would be rounded
        raise ctx.error(
            f"the {what} bound {value} has no exact float64 value",
            hint="use a bound within +-2**53",
        )
    return float(value)


# -- values passed through or given -----------------------------------------------------


@converter("Identity", since=13, notes="tensors only")
def convert_identity(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.input(0)]


@converter("Dropout", since=13, notes="inference only: the input passes through; no mask")
def convert_dropout(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    given = ctx.optional_input(2)
    training_mode = ctx.constant_value(given)
    if given is not None and (training_mode is None or bool(training_mode.any())):
        found = "not a constant" if training_mode is None else "true"
        raise ctx.error(
            f"training_mode is {found}; fhec compiles inference, where Dropout passes "
            "its input through",
            hint="export the model in inference mode (model.eval() in PyTorch)",
        )
    if ctx.output_used(1):
        raise ctx.error(
            f"the mask output {node.output[1]!r} is used; fhec does not compute Dropout masks",
            hint="export the model in inference mode, without uses of the mask",
        )
    return [ctx.input(0)]


@converter("Constant", since=13, notes="value, value_float(s), value_int(s); not sparse or strings")
def convert_constant(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    array = _constant_attribute(node, ctx)
    try:
        DType.from_numpy(array.dtype)
    except ValueError:
        raise ctx.error(
            f"a constant of element type {array.dtype} is not supported",
            hint="use float32, float64 or a signed integer type",
        ) from None
    return [ctx.constant(array)]


def _constant_attribute(node: onnx.NodeProto, ctx: ConversionContext) -> np.ndarray:
    if ctx.has_attr("value"):
        return numpy_helper.to_array(ctx.attr("value"))
    if ctx.has_attr("value_float") or ctx.has_attr("value_floats"):
        return np.array(ctx.attr("value_float", ctx.attr("value_floats")), dtype=np.float32)
    if ctx.has_attr("value_int") or ctx.has_attr("value_ints"):
        return np.array(ctx.attr("value_int", ctx.attr("value_ints")), dtype=np.int64)
    given = ", ".join(a.name for a in node.attribute) or "none"
    raise ctx.error(
        f"attribute {given} is not supported: fhec takes dense numeric constants",
        hint="give the constant as `value` (a dense tensor) or value_float(s) / value_int(s)",
    )
