"""ONNX -> IR: load and check the model, fix its shapes, convert node by node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference, version_converter

import fhec.frontend.converters  # noqa: F401  (fills the converter table)
from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import lookup
from fhec.ir.errors import CompileError, FhecError, InternalCompilerError
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.location import Location
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.signature import Signature, TensorSpec
from fhec.ir.types import DType, TensorType

# Older models are upgraded to this opset with onnx's version converter first.
MIN_OPSET = 13


@dataclass(frozen=True, slots=True)
class ImportedModel:
    module: Module
    signature: Signature
    opset: int


def load_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Read and check an ONNX model; a clear FhecError for anything that is not one."""
    if isinstance(model, onnx.ModelProto):
        proto = model
        source = "the given model"
    else:
        path = Path(model)
        source = f"'{path}'"
        if not path.exists():
            raise FhecError(f"model file {source} does not exist", hint="check the path")
        if path.is_dir():
            raise FhecError(f"{source} is a directory, not an ONNX file")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # protobuf raises several kinds on garbage
            raise FhecError(
                f"{source} is not a readable ONNX model ({type(exc).__name__})",
                hint="export the model again; the file may be truncated or of another format",
            ) from None
    if not proto.graph.node and not proto.graph.output:
        raise FhecError(f"{source} holds no ONNX graph", hint="is it really an .onnx file?")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise FhecError(f"{source} is not a valid ONNX model: {first_line}") from None
    return proto


def import_onnx(
    model: str | Path | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    batch_size: int = 1,
) -> ImportedModel:
    """Convert an ONNX model to a module with static shapes.

    A symbolic leading dimension of an input is its batch axis, fixed to `batch_size`;
    any other symbolic dimension must be fixed by `input_shapes` (name -> full shape).
    """
    proto = _upgrade(load_onnx(model))
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}
    initializers = {t.name: t for t in proto.graph.initializer}
    real_inputs = [i for i in proto.graph.input if i.name not in initializers]
    specs = [_input_spec(i, input_shapes or {}, batch_size) for i in real_inputs]
    _reject_unknown_shapes(input_shapes or {}, specs)
    inferred = _onnx_inferred_shapes(proto, specs)

    graph = Graph()
    values: dict[str, ValueId] = {}
    for spec in specs:
        tensor_type = TensorType(spec.shape, spec.dtype)
        op = InputOp(spec.name, tensor_type)
        values[spec.name] = graph.add(op, [], tensor_type, Location(spec.name, "Input"))
    for name, tensor in initializers.items():
        array = numpy_helper.to_array(tensor)
        _check_dtype(array, Location(name, "Initializer"))
        constant = ConstantOp.of(array)
        values[name] = graph.add(constant, [], constant.value.type, Location(name, "Initializer"))

    context = ConversionContext(graph, values, opsets, used_names=_used_names(proto.graph))
    for index, node in enumerate(proto.graph.node):
        _convert_node(node, index, context, opsets, inferred)

    outputs = []
    for output in proto.graph.output:
        if output.name not in values:
            raise CompileError(f"graph output {output.name!r} is not computed by any node")
        outputs.append((output.name, values[output.name]))
    module = Module(Function("main", graph, outputs))
    batched = any(s.batch_axis is not None for s in specs)
    output_specs = tuple(
        _output_spec(o, graph.node(values[o.name]).type, batched) for o in proto.graph.output
    )
    return ImportedModel(module, Signature(tuple(specs), output_specs), opsets.get("", 0))


def _upgrade(proto: onnx.ModelProto) -> onnx.ModelProto:
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    newest = onnx.defs.onnx_opset_version()
    if version is None:
        return proto
    if version > newest:
        raise FhecError(
            f"the model uses opset {version}, newer than the {newest} this onnx knows",
            hint=f"export with opset {newest} or older",
        )
    if version >= MIN_OPSET:
        return proto
    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:
        raise FhecError(
            f"cannot upgrade the model from opset {version} to {MIN_OPSET}: {exc}",
            hint=f"export with opset {MIN_OPSET} or newer",
        ) from None


def _used_names(graph: onnx.GraphProto) -> frozenset[str]:
    """Every value name a node reads (subgraphs included) or the graph returns."""
    names = {output.name for output in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:  # `g` is empty when unset
                names |= _used_names(subgraph)
    return frozenset(names)


def _convert_node(
    node: onnx.NodeProto,
    index: int,
    context: ConversionContext,
    opsets: Mapping[str, int],
    inferred: Mapping[str, tuple[int, ...]],
) -> None:
    context.begin(node, index)
    domain = "" if node.domain == "ai.onnx" else node.domain
    opset = opsets.get(domain, 1)
    entry = lookup(domain, node.op_type, opset)
    if entry is None:
        raise CompileError(
            f"op {node.op_type} of domain '{domain or 'ai.onnx'}' (opset {opset}) is not supported",
            context.location,
            hint="docs/ops.md lists the supported ops; replace the op before export",
        )
    results = list(entry.convert(node, context))
    for position, name in enumerate(node.output):
        if not name:
            continue
        result = results[position] if position < len(results) else None
        if result is None:
            continue  # an optional output fhec does not compute: using it fails later
        expected = inferred.get(name)
        actual = context.type_of(result).shape
        if expected is not None and expected != actual:
            raise InternalCompilerError(
                f"{context.location.describe()}: converter gives shape {actual} for {name!r}, "
                f"ONNX shape inference gives {expected}",
                "frontend",
            )
        context.values[name] = result


def _input_spec(
    value: onnx.ValueInfoProto, given: Mapping[str, Sequence[int]], batch_size: int
) -> TensorSpec:
    where = f"input {value.name!r}"
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise FhecError(f"{where} is not a tensor", hint="fhec compiles tensor inputs only")
    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    try:
        dtype = DType.from_numpy(np_dtype)
    except ValueError:
        raise FhecError(
            f"{where} has element type {np_dtype}, which fhec does not support"
        ) from None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if value.name in given:
        shape = tuple(int(d) for d in given[value.name])
        mismatch = len(shape) != len(dims) or any(
            d is not None and d != s for d, s in zip(dims, shape, strict=False)
        )
        if mismatch:
            declared = "x".join("?" if d is None else str(d) for d in dims)
            raise FhecError(f"{where}: shape {shape} does not fit the declared {declared}")
        batch_axis = 0 if dims and dims[0] is None else None
        return TensorSpec(value.name, shape, dtype, batch_axis)
    resolved = []
    for axis, dim in enumerate(dims):
        if dim is not None:
            resolved.append(dim)
        elif axis == 0:
            resolved.append(batch_size)
        else:
            name = tensor.shape.dim[axis].dim_param or "unknown"
            raise FhecError(
                f"{where}: dimension {axis} is symbolic ('{name}') and nothing fixes it",
                hint=f"give the input's full shape (--input-shape {value.name}=...) "
                "or calibration data",
            )
    batch_axis = 0 if dims and dims[0] is None else None
    return TensorSpec(value.name, tuple(resolved), dtype, batch_axis)


def _reject_unknown_shapes(given: Mapping[str, Sequence[int]], specs: list[TensorSpec]) -> None:
    names = {s.name for s in specs}
    for name in given:
        if name not in names:
            raise FhecError(
                f"a shape is given for {name!r}, which is not an input of the model",
                hint=f"inputs are: {', '.join(sorted(names))}",
            )


def _onnx_inferred_shapes(
    proto: onnx.ModelProto, specs: list[TensorSpec]
) -> dict[str, tuple[int, ...]]:
    """ONNX's own shape inference on the model with fixed input shapes: a cross-check."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    by_name = {s.name: s for s in specs}
    for graph_input in fixed.graph.input:
        if graph_input.name in by_name:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, size in zip(dims, by_name[graph_input.name].shape, strict=True):
                dim.Clear()
                dim.dim_value = size
    try:
        fixed = shape_inference.infer_shapes(fixed, strict_mode=False)
    except Exception:
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    for info in list(fixed.graph.value_info) + list(fixed.graph.output):
        if not info.type.HasField("tensor_type"):
            continue
        shape = info.type.tensor_type.shape
        if info.type.tensor_type.HasField("shape") and all(
            d.HasField("dim_value") for d in shape.dim
        ):
            shapes[info.name] = tuple(d.dim_value for d in shape.dim)
    return shapes


def _output_spec(value: onnx.ValueInfoProto, ir_type: TensorType, batched: bool) -> TensorSpec:
    dims = list(value.type.tensor_type.shape.dim) if value.type.HasField("tensor_type") else []
    symbolic_first = not dims or not dims[0].HasField("dim_value")
    batch_axis = 0 if batched and symbolic_first and ir_type.rank >= 1 else None
    return TensorSpec(value.name, ir_type.shape, ir_type.dtype, batch_axis)


def _check_dtype(array: np.ndarray, location: Location) -> None:
    try:
        DType.from_numpy(array.dtype)
    except ValueError:
        raise CompileError(
            f"constant of element type {array.dtype} is not supported", location
        ) from None
