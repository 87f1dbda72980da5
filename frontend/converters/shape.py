"""Converters for layout ops (reshapes, transposes, concat, pad), reductions, argmax,
and the shape arithmetic PyTorch exports around reshapes (Shape, Gather, Cast).

Shapes are static in fhec, so Shape is a constant, and a Reshape's target shape is
evaluated at import time whenever it is computed from constants alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.shape import (
    ArgMaxOp,
    CastOp,
    ConcatOp,
    GatherOp,
    PadOp,
    ReduceMaxOp,
    ReduceMeanOp,
    ReduceSumOp,
    ReshapeOp,
    TransposeOp,
)
from fhec.ir.types import DType

# -- helpers ------------------------------------------------------------------


def static_value(ctx: ConversionContext, value: ValueId) -> np.ndarray | None:
    """The value of `value` when it depends on constants only (an initializer, or shape
    arithmetic such as Shape -> Gather -> Concat), else None."""
    graph = ctx.graph
    ancestors = graph.ancestors(value) | {value}
    if any(isinstance(graph.node(v).op, InputOp) for v in ancestors):
        return None
    values: dict[ValueId, np.ndarray] = {}
    for v in sorted(ancestors):  # ids grow in creation order: operands come first
        node = graph.node(v)
        operands = [values[o] for o in graph.operands(v)]
        values[v] = np.asarray(node.op.evaluate(operands)).astype(node.type.dtype.numpy)
    return values[value]


def static_input(ctx: ConversionContext, index: int, what: str) -> np.ndarray | None:
    """Input `index` as an array; None when omitted; a CompileError when it depends on a
    model input (fhec needs shapes, pads and axes at compile time)."""
    value = ctx.optional_input(index)
    return None if value is None else _require_static(ctx, value, index, what)


def required_static_input(ctx: ConversionContext, index: int, what: str) -> np.ndarray:
    return _require_static(ctx, ctx.input(index), index, what)


def _require_static(ctx: ConversionContext, value: ValueId, index: int, what: str) -> np.ndarray:
    array = static_value(ctx, value)
    if array is None:
        raise ctx.error(
            f"{what} (input {index}, {ctx.node.input[index]!r}) must be a constant, "
            "but it is computed from a model input",
            hint="fhec compiles static shapes: make it an initializer, or export with "
            "constant folding",
        )
    return array


def resolve_axis(ctx: ConversionContext, axis: int, rank: int, *, what: str = "axis") -> int:
    """`axis` in [-rank, rank) as a non-negative axis; a CompileError otherwise."""
    if not -rank <= axis < rank:
        raise ctx.error(f"{what}={axis} is out of range for an input of rank {rank}")
    return axis % rank


def resolve_axes(ctx: ConversionContext, axes: Sequence[int], rank: int) -> tuple[int, ...]:
    resolved = [resolve_axis(ctx, int(a), rank, what="axes entry") for a in axes]
    if len(set(resolved)) != len(resolved):
        raise ctx.error(f"axes={[int(a) for a in axes]} name an axis twice")
    return tuple(sorted(resolved))


def _axes_operand(ctx: ConversionContext) -> list[int] | None:
    """Axes from the `axes` attribute (older opsets) or the constant input 1 (newer)."""
    if ctx.has_attr("axes"):
        return [int(a) for a in ctx.attr("axes")]
    array = static_input(ctx, 1, "axes")
    return None if array is None else [int(a) for a in array.reshape(-1)]


def _reshape(ctx: ConversionContext, x: ValueId, shape: Sequence[int]) -> ValueId:
    return ctx.emit(ReshapeOp(tuple(int(d) for d in shape)), x)


# -- reshapes -------------------------------------------------------------------


@converter("Shape", since=1, notes="static shapes: always a constant")
@converter("Shape", since=15, notes="static shapes: always a constant; start and end")
def convert_shape(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    shape = ctx.type_of(ctx.input(0)).shape
    start, end = int(ctx.attr("start", 0)), ctx.attr("end", None)
    # ONNX clamps start and end to [0, rank], as Python slices do.
    selected = shape[start:] if end is None else shape[start : int(end)]
    return [ctx.constant(np.array(selected, dtype=np.int64))]


@converter("Flatten", since=1)
def convert_flatten(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    shape = ctx.type_of(x).shape
    axis = int(ctx.attr("axis", 1))
    if not -len(shape) <= axis <= len(shape):
        raise ctx.error(f"axis={axis} is out of range for an input of rank {len(shape)}")
    if axis < 0:
        axis += len(shape)
    return [_reshape(ctx, x, (math.prod(shape[:axis]), math.prod(shape[axis:])))]


@converter("Reshape", since=5, notes="static target shape (constants, shape arithmetic); 0, -1")
@converter(
    "Reshape", since=14, notes="static target shape (constants, shape arithmetic); 0, -1, allowzero"
)
def convert_reshape(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    target = required_static_input(ctx, 1, "the target shape")
    shape = _resolve_shape(ctx, ctx.type_of(x).shape, [int(d) for d in target.reshape(-1)])
    return [_reshape(ctx, x, shape)]


def _resolve_shape(ctx: ConversionContext, source: tuple[int, ...], dims: list[int]) -> list[int]:
    """ONNX Reshape: 0 copies the input's dimension (unless allowzero), -1 takes the rest."""
    if not ctx.attr("allowzero", 0):
        for position, dim in enumerate(dims):
            if dim == 0:
                if position >= len(source):
                    raise ctx.error(f"shape {dims}: 0 at position {position} copies no input axis")
                dims[position] = source[position]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ctx.error(f"shape {dims} is invalid: at most one -1 and no other negative size")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or math.prod(source) % known:
            raise ctx.error(f"cannot reshape {source} to {dims}: -1 has no whole size")
        dims[dims.index(-1)] = math.prod(source) // known
    return dims


@converter("Squeeze", since=1, notes="axes attribute")
@converter("Squeeze", since=13, notes="axes as a constant input")
def convert_squeeze(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    shape = ctx.type_of(x).shape
    axes = _axes_operand(ctx)
    if axes is None:
        dropped = tuple(i for i, d in enumerate(shape) if d == 1)
    else:
        dropped = resolve_axes(ctx, axes, len(shape))
    for axis in dropped:
        if shape[axis] != 1:
            raise ctx.error(f"cannot squeeze axis {axis} of shape {shape}: its size is not 1")
    return [_reshape(ctx, x, [d for i, d in enumerate(shape) if i not in dropped])]


@converter("Unsqueeze", since=1, notes="axes attribute")
@converter("Unsqueeze", since=13, notes="axes as a constant input")
def convert_unsqueeze(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    shape = ctx.type_of(x).shape
    axes = _axes_operand(ctx)
    if not axes:
        raise ctx.error("axes are empty: there is no axis to insert")
    rank = len(shape) + len(axes)
    inserted = resolve_axes(ctx, axes, rank)  # axes index the result
    rest = iter(shape)
    return [_reshape(ctx, x, [1 if i in inserted else next(rest) for i in range(rank)])]


@converter("Transpose", since=1)
def convert_transpose(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    rank = ctx.type_of(x).rank
    perm = tuple(int(p) for p in ctx.attr("perm", list(reversed(range(rank)))))
    return [ctx.emit(TransposeOp(perm), x)]


@converter("Concat", since=4)
def convert_concat(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    operands = ctx.inputs()
    axis = resolve_axis(ctx, int(ctx.attr("axis")), ctx.type_of(operands[0]).rank)
    return [ctx.emit(ConcatOp(axis), *operands)]


# -- padding --------------------------------------------------------------------


@converter("Pad", since=11, notes="constant mode only; constant pads and constant_value")
@converter("Pad", since=18, notes="constant mode only; constant pads, constant_value and axes")
def convert_pad(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    mode = ctx.attr("mode", "constant")
    if mode != "constant":
        raise ctx.error(
            f"mode={mode!r} is not supported: only constant padding",
            hint="pad with a constant (mode='constant'), or pad the data before inference",
        )
    x = ctx.input(0)
    rank = ctx.type_of(x).rank
    pads_input = static_input(ctx, 1, "pads")
    pads = [] if pads_input is None else [int(p) for p in pads_input.reshape(-1)]
    fill = static_input(ctx, 2, "constant_value")
    value = 0.0 if fill is None or fill.size == 0 else float(fill.reshape(-1)[0])
    axes_input = static_input(ctx, 3, "axes")
    axes = None if axes_input is None else [int(a) for a in axes_input.reshape(-1)]
    return [ctx.emit(PadOp(_full_pads(ctx, pads, axes, rank), value), x)]


def _full_pads(
    ctx: ConversionContext, pads: list[int], axes: list[int] | None, rank: int
) -> tuple[int, ...]:
    """Pads for every axis (begins, then ends) from pads given for `axes` only."""
    padded_axes = list(range(rank)) if axes is None else [resolve_axis(ctx, a, rank) for a in axes]
    if len(pads) != 2 * len(padded_axes):
        raise ctx.error(f"pads={pads} need 2 entries for each of the {len(padded_axes)} axes")
    full = [0] * (2 * rank)
    for position, axis in enumerate(padded_axes):
        full[axis] = pads[position]
        full[axis + rank] = pads[position + len(padded_axes)]
    return tuple(full)


# -- reductions -----------------------------------------------------------------


Reduction = type[ReduceSumOp | ReduceMeanOp | ReduceMaxOp]


def _reduce(ctx: ConversionContext, op_cls: Reduction) -> ValueId:
    x = ctx.input(0)
    rank = ctx.type_of(x).rank
    axes = _axes_operand(ctx)
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return x  # ONNX: no axes and noop_with_empty_axes=1 is the identity
        axes = list(range(rank))
    return ctx.emit(op_cls(resolve_axes(ctx, axes, rank), bool(ctx.attr("keepdims", 1))), x)


@converter("ReduceSum", since=1, notes="axes attribute; keepdims")
@converter("ReduceSum", since=13, notes="constant axes input; keepdims, noop_with_empty_axes")
def convert_reduce_sum(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_reduce(ctx, ReduceSumOp)]


@converter("ReduceMean", since=1, notes="axes attribute; keepdims")
@converter("ReduceMean", since=18, notes="constant axes input; keepdims, noop_with_empty_axes")
def convert_reduce_mean(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_reduce(ctx, ReduceMeanOp)]


@converter("ReduceMax", since=1, notes="axes attribute; keepdims")
@converter("ReduceMax", since=18, notes="constant axes input; keepdims, noop_with_empty_axes")
def convert_reduce_max(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    return [_reduce(ctx, ReduceMaxOp)]


@converter("ArgMax", since=1, notes="keepdims, select_last_index")
def convert_argmax(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    axis = resolve_axis(ctx, int(ctx.attr("axis", 0)), ctx.type_of(x).rank)
    op = ArgMaxOp(axis, bool(ctx.attr("keepdims", 1)), bool(ctx.attr("select_last_index", 0)))
    return [ctx.emit(op, x)]


# -- element selection and type ------------------------------------------------


@converter("Gather", since=1, notes="constant indices (a static selection)")
def convert_gather(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    data = ctx.input(0)
    shape = ctx.type_of(data).shape
    indices = required_static_input(ctx, 1, "the indices")
    axis = resolve_axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    if indices.size and (indices.min() < -shape[axis] or indices.max() >= shape[axis]):
        raise ctx.error(f"indices {indices.tolist()} are out of range for an axis of {shape[axis]}")
    return [ctx.emit(GatherOp(axis), data, ctx.input(1))]


@converter("Cast", since=6, notes="numeric types only; float to integer truncates")
def convert_cast(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    to = onnx_dtype(ctx, int(ctx.attr("to")))
    if to == ctx.type_of(x).dtype:
        return [x]
    return [ctx.emit(CastOp(to), x)]


def onnx_dtype(ctx: ConversionContext, element_type: int) -> DType:
    """The fhec element type of an ONNX TensorProto data type; a CompileError if none."""
    name = onnx.TensorProto.DataType.Name(element_type)
    try:
        return DType.from_numpy(onnx.helper.tensor_dtype_to_np_dtype(element_type))
    except (KeyError, ValueError, TypeError):
        raise ctx.error(
            f"element type {name} is not supported",
            hint="fhec computes on float32/64, int8/16/32/64, uint8 and bool",
        ) from None
