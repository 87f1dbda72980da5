"""The fhec IR: types, ops, graph, text form and verifier. Knows nothing of ONNX or FHE."""

from fhec.ir.annotation import ANNOTATION_REGISTRY, Annotation, register_annotation
from fhec.ir.attributes import DenseElements
from fhec.ir.errors import (
    ArtifactError,
    CompileError,
    FhecError,
    InputError,
    InternalCompilerError,
)
from fhec.ir.graph import Function, Graph, Module, Node, ValueId
from fhec.ir.interval import Interval
from fhec.ir.location import UNKNOWN_LOCATION, Location
from fhec.ir.op import OP_REGISTRY, Op, register_op
from fhec.ir.types import DType, TensorType

__all__ = [
    "ANNOTATION_REGISTRY",
    "OP_REGISTRY",
    "UNKNOWN_LOCATION",
    "Annotation",
    "ArtifactError",
    "CompileError",
    "DType",
    "DenseElements",
    "FhecError",
    "Function",
    "Graph",
    "InputError",
    "InternalCompilerError",
    "Interval",
    "Location",
    "Module",
    "Node",
    "Op",
    "TensorType",
    "ValueId",
    "register_annotation",
    "register_op",
]
