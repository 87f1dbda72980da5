"""Attribute values of ops and annotations, and their one text syntax.

An op or annotation is a frozen dataclass; its fields are its attributes. The
printer and parser follow from the field types alone, so every op round-trips
through text without code of its own. Supported field types: bool, int, float,
str, StrEnum subclasses, TensorType, DenseElements, tuples of those, and `X | None`.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache

import numpy as np

from fhec.ir.types import DType, TensorType


@dataclass(frozen=True, slots=True, eq=False)
class DenseElements:
    """An immutable constant tensor with value equality (bytes are compared, not floats)."""

    dtype: DType
    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_array(cls, array: np.ndarray | float | int) -> DenseElements:
        arr = np.asarray(array)
        dtype = DType.from_numpy(arr.dtype)
        contiguous = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        return cls(dtype, tuple(int(d) for d in arr.shape), contiguous.tobytes())

    @property
    def array(self) -> np.ndarray:
        """A read-only numpy view of the value."""
        arr = np.frombuffer(self.data, dtype=self.dtype.numpy.newbyteorder("<"))
        return arr.reshape(self.shape).astype(self.dtype.numpy, copy=False)

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseElements):
            return NotImplemented
        return (self.dtype, self.shape, self.data) == (other.dtype, other.shape, other.data)

    def __hash__(self) -> int:
        return hash((self.dtype, self.shape, self.data))

    def __repr__(self) -> str:
        return f"DenseElements({self.array!r})"


AttributeValue = (
    bool | int | float | str | StrEnum | TensorType | DenseElements | tuple[object, ...] | None
)


def format_value(value: object, *, elide_over: int | None = None) -> str:
    """The text form of one attribute value (see the grammar in ir/grammar.lark)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return json.dumps(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, TensorType):
        return str(value)
    if isinstance(value, DenseElements):
        return _format_dense(value, elide_over)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v, elide_over=elide_over) for v in value) + "]"
    raise TypeError(f"cannot print attribute value {value!r}")


def _format_dense(value: DenseElements, elide_over: int | None) -> str:
    dims = "".join(f"{d}x" for d in value.shape)
    if elide_over is not None and len(value.data) > elide_over:
        return f'dense<{dims}{value.dtype}, "...">'
    return f'dense<{dims}{value.dtype}, "0x{value.data.hex().upper()}">'


def parse_dense(shape_dtype: str, hex_text: str) -> DenseElements:
    *dims, dtype = shape_dtype.split("x")
    if not hex_text.startswith("0x"):
        raise ValueError("elided constants cannot be parsed back: print without elision")
    shape = tuple(int(d) for d in dims)
    dense = DenseElements(DType(dtype), shape, bytes.fromhex(hex_text[2:]))
    expected = int(np.prod(shape, dtype=np.int64)) * dense.dtype.numpy.itemsize
    if len(dense.data) != expected:
        raise ValueError(f"dense constant has {len(dense.data)} bytes, shape needs {expected}")
    return dense


def coerce(value: object, hint: object) -> object:
    """Turn a parsed text value into the Python value a field of type `hint` holds."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, found {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} elements, found {len(value)}")
        return tuple(coerce(v, a) for v, a in zip(value, args, strict=True))
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, found {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, found {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"expected a number, found {value!r}")
        return float(value)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(str(value))
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, found {value!r}")
        return value
    if hint in (TensorType, DenseElements):
        if not isinstance(value, hint):
            raise TypeError(f"expected {hint}, found {value!r}")
        return value
    raise TypeError(f"unsupported attribute type {hint!r}")


def field_hints(cls: type) -> dict[str, object]:
    """The declared attribute fields of an op, annotation or pass class, with their types."""
    return _field_hints(cls)


@cache
def _field_hints(cls: typing.Hashable) -> dict[str, object]:
    assert isinstance(cls, type)
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}
