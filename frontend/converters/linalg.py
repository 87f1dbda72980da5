"""Converters for Gemm, MatMul, Conv; and the window attributes Conv and pooling share."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp

# fhec's backends lower 1-D and 2-D windows (convolution, pooling) only.
SUPPORTED_SPATIAL_RANKS = (1, 2)


@converter("Gemm", since=13, notes="C optional, unidirectionally broadcast")
def convert_gemm(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    op = GemmOp(
        alpha=float(ctx.attr("alpha", 1.0)),
        beta=float(ctx.attr("beta", 1.0)),
        trans_a=bool(ctx.attr("transA", 0)),
        trans_b=bool(ctx.attr("transB", 0)),
    )
    return [ctx.emit(op, *ctx.inputs())]


@converter("MatMul", since=13, notes="numpy matmul: 1-D operands, batched N-D broadcast")
def convert_matmul(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(MatMulOp(), ctx.input(0), ctx.input(1))]


@converter("Conv", since=11, notes="1-D and 2-D; pads, strides, dilations, group, auto_pad")
def convert_conv(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x, weights, bias = ctx.input(0), ctx.input(1), ctx.optional_input(2)
    spatial = ctx.type_of(x).shape[2:]
    kernel = ctx.type_of(weights).shape[2:]
    check_spatial_rank(ctx, len(spatial))
    if ctx.has_attr("kernel_shape") and tuple(ctx.attr("kernel_shape")) != kernel:
        raise ctx.error(
            f"kernel_shape={ctx.attr('kernel_shape')} does not match the weights' "
            f"spatial shape {kernel}",
            hint="drop kernel_shape or make it equal to W's spatial dimensions",
        )
    strides, dilations = window_steps(ctx, len(spatial))
    pads = explicit_pads(ctx, spatial, kernel, strides, dilations)
    op = ConvOp(strides, pads, dilations, group=int(ctx.attr("group", 1)))
    operands = (x, weights) if bias is None else (x, weights, bias)
    return [ctx.emit(op, *operands)]


# -- window attributes (Conv, AveragePool, MaxPool) ----------------------------


def check_spatial_rank(ctx: ConversionContext, rank: int) -> None:
    if rank not in SUPPORTED_SPATIAL_RANKS:
        raise ctx.error(
            f"{rank}-D {ctx.node.op_type} is not supported (input of {rank} spatial axes)",
            hint="only 1-D and 2-D convolution and pooling are; reshape to 2-D before export",
        )


def window_steps(ctx: ConversionContext, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`strides` and `dilations`, each one per spatial axis, 1 when omitted."""
    strides = tuple(int(s) for s in ctx.attr("strides", [1] * rank))
    dilations = tuple(int(d) for d in ctx.attr("dilations", [1] * rank))
    return strides, dilations


def explicit_pads(
    ctx: ConversionContext,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
) -> tuple[int, ...]:
    """The pads (all begins, then all ends) that `auto_pad` or `pads` ask for."""
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        return tuple(int(p) for p in ctx.attr("pads", [0] * (2 * len(spatial))))
    if ctx.has_attr("pads"):
        raise ctx.error(
            f"both pads and auto_pad={auto_pad} are set", hint="ONNX allows one or the other"
        )
    if auto_pad == "VALID":
        return (0,) * (2 * len(spatial))
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(
            f"auto_pad={auto_pad!r} is not an ONNX padding mode",
            hint="use NOTSET, VALID, SAME_UPPER or SAME_LOWER",
        )
    begins, ends = [], []
    for size, k, stride, dilation in zip(spatial, kernel, strides, dilations, strict=True):
        # SAME: output size ceil(size / stride); the odd pad goes to the end (UPPER)
        # or to the beginning (LOWER).
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + dilation * (k - 1) + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return (*begins, *ends)
