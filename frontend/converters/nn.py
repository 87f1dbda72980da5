"""Converters for pooling, batch normalization and softmax."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.converters.linalg import check_spatial_rank, explicit_pads, window_steps
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.nn import AvgPoolOp, BatchNormOp, LogSoftmaxOp, MaxPoolOp, SoftmaxOp

Window = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]
LATE_WINDOW = "a ceil_mode window starting in the right pad needs opset 22"


def _pool_window(ctx: ConversionContext) -> Window:
    """kernel, strides, pads, dilations of a pooling node on input 0."""
    spatial = ctx.type_of(ctx.input(0)).shape[2:]
    kernel = tuple(int(k) for k in ctx.attr("kernel_shape", []))
    check_spatial_rank(ctx, len(spatial))
    if len(kernel) != len(spatial):
        raise ctx.error(
            f"kernel_shape={list(kernel)} does not fit an input of {len(spatial)} spatial axes"
        )
    strides, dilations = window_steps(ctx, len(spatial))
    pads = explicit_pads(ctx, spatial, kernel, strides, dilations)
    return kernel, strides, pads, dilations


def _ceil_mode(ctx: ConversionContext, window: Window, drops_late_windows: bool) -> bool:
    """ceil_mode, checked; `drops_late_windows`: the opset's pooling (22 on) drops a
    last window that would start in the right padding, as onnxruntime always does."""
    if not ctx.attr("ceil_mode", 0):
        return False
    if ctx.attr("auto_pad", "NOTSET") != "NOTSET":
        # ONNX's reference and onnxruntime disagree on this combination.
        raise ctx.error(
            f"ceil_mode=1 with auto_pad={ctx.attr('auto_pad')} is not supported",
            hint="use explicit pads with ceil_mode, or auto_pad without it",
        )
    if not drops_late_windows and _last_window_starts_in_right_pad(ctx, window):
        raise ctx.error(
            "with ceil_mode=1 the last window starts in the right padding: before opset 22 "
            "ONNX keeps it, onnxruntime drops it",
            hint="export with opset 22 or newer, or change pads or strides",
        )
    return True


def _last_window_starts_in_right_pad(ctx: ConversionContext, window: Window) -> bool:
    kernel, strides, pads, dilations = window
    spatial = ctx.type_of(ctx.input(0)).shape[2:]
    for axis, size in enumerate(spatial):
        room = (
            size + pads[axis] + pads[len(spatial) + axis] - dilations[axis] * (kernel[axis] - 1) - 1
        )
        last_start = -(-room // strides[axis]) * strides[axis]
        if room >= 0 and last_start >= size + pads[axis]:
            return True
    return False


def _average_pool(ctx: ConversionContext, drops_late_windows: bool) -> ValueId:
    window = _pool_window(ctx)
    op = AvgPoolOp(
        *window,
        count_include_pad=bool(ctx.attr("count_include_pad", 0)),
        ceil_mode=_ceil_mode(ctx, window, drops_late_windows),
    )
    return ctx.emit(op, ctx.input(0))


@converter(
    "AveragePool",
    since=11,
    notes=f"1-D and 2-D; {LATE_WINDOW}",
)
@converter(
    "AveragePool",
    since=19,
    notes=f"1-D and 2-D, dilations; {LATE_WINDOW}",
)
def convert_average_pool(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_average_pool(ctx, drops_late_windows=False)]


@converter("AveragePool", since=22, notes="1-D and 2-D, dilations")
def convert_average_pool_22(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_average_pool(ctx, drops_late_windows=True)]


@converter("GlobalAveragePool", since=1, notes="1-D and 2-D")
def convert_global_average_pool(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    spatial = ctx.type_of(ctx.input(0)).shape[2:]
    check_spatial_rank(ctx, len(spatial))
    ones = (1,) * len(spatial)
    op = AvgPoolOp(spatial, ones, (0,) * (2 * len(spatial)), ones)
    return [ctx.emit(op, ctx.input(0))]


def _max_pool(node: onnx.NodeProto, ctx: ConversionContext, drops_late_windows: bool) -> ValueId:
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(
            f"the Indices output ({node.output[1]!r}) of MaxPool is not supported",
            hint="export the pooling without return_indices",
        )
    # storage_order only changes Indices, so it is irrelevant here.
    window = _pool_window(ctx)
    op = MaxPoolOp(*window, ceil_mode=_ceil_mode(ctx, window, drops_late_windows))
    return ctx.emit(op, ctx.input(0))


@converter(
    "MaxPool",
    since=12,
    notes=f"1-D and 2-D; no Indices output; {LATE_WINDOW}",
)
def convert_max_pool(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_max_pool(node, ctx, drops_late_windows=False)]


@converter("MaxPool", since=22, notes="1-D and 2-D; no Indices output")
def convert_max_pool_22(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_max_pool(node, ctx, drops_late_windows=True)]


@converter("BatchNormalization", since=9, notes="inference mode only")
@converter("BatchNormalization", since=14, notes="inference mode only (training_mode=0)")
def convert_batch_normalization(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    if ctx.attr("training_mode", 0):
        raise ctx.error(
            "training_mode=1 (batch statistics) is not supported",
            hint="export the model in eval mode (model.eval() in PyTorch)",
        )
    training_outputs = [name for name in node.output[1:] if name]
    if training_outputs:
        raise ctx.error(
            f"the running statistics outputs {training_outputs} are not supported",
            hint="export the model in eval mode; only the normalized output Y is computed",
        )
    op = BatchNormOp(epsilon=float(ctx.attr("epsilon", 1e-5)))
    return [ctx.emit(op, *(ctx.input(i) for i in range(5)))]


@converter("Softmax", since=13, notes="along one axis")
def convert_softmax(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SoftmaxOp(axis=int(ctx.attr("axis", -1))), ctx.input(0))]


@converter("LogSoftmax", since=13, notes="along one axis")
def convert_log_softmax(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(LogSoftmaxOp(axis=int(ctx.attr("axis", -1))), ctx.input(0))]
