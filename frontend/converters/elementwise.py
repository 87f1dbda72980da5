"""Converters for elementwise arithmetic, math and activations."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.elementwise import AddOp, MulOp, ReluOp, SubOp


@converter("Add", since=7)
def convert_add(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(AddOp(), ctx.input(0), ctx.input(1))]


@converter("Sub", since=7)
def convert_sub(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(SubOp(), ctx.input(0), ctx.input(1))]


@converter("Mul", since=7)
def convert_mul(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(MulOp(), ctx.input(0), ctx.input(1))]


@converter("Relu", since=6)
def convert_relu(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [ctx.emit(ReluOp(), ctx.input(0))]
