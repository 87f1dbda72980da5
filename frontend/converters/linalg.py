"""Converters for Gemm, MatMul, Conv."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.linalg import GemmOp


@converter("Gemm", since=11, notes="C optional, unidirectionally broadcast")
def convert_gemm(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    op = GemmOp(
        alpha=float(ctx.attr("alpha", 1.0)),
        beta=float(ctx.attr("beta", 1.0)),
        trans_a=bool(ctx.attr("transA", 0)),
        trans_b=bool(ctx.attr("transB", 0)),
    )
    return [ctx.emit(op, *ctx.inputs())]
