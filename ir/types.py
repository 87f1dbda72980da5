"""Value types of the IR: tensors with a static shape, an element type, and secrecy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np


class DType(StrEnum):
    """Element types, spelled as in the text form."""

    F32 = "f32"
    F64 = "f64"
    I8 = "i8"
    I16 = "i16"
    I32 = "i32"
    I64 = "i64"
    U8 = "u8"
    BOOL = "i1"

    @property
    def numpy(self) -> np.dtype[np.generic]:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.F32, DType.F64)

    @classmethod
    def from_numpy(cls, dtype: np.dtype[np.generic] | type) -> DType:
        key = np.dtype(dtype).name
        for member, name in _TO_NUMPY.items():
            if name == key:
                return member
        raise ValueError(f"unsupported element type {key!r}")


_TO_NUMPY: dict[DType, str] = {
    DType.F32: "float32",
    DType.F64: "float64",
    DType.I8: "int8",
    DType.I16: "int16",
    DType.I32: "int32",
    DType.I64: "int64",
    DType.U8: "uint8",
    DType.BOOL: "bool",
}


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor of static `shape`; `secret` values are encrypted by the FHE backends."""

    shape: tuple[int, ...]
    dtype: DType
    secret: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def with_secret(self, secret: bool) -> TensorType:
        return replace(self, secret=secret)

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        return replace(self, shape=shape)

    def __str__(self) -> str:
        dims = "".join(f"{d}x" for d in self.shape)
        return f"tensor<{dims}{self.dtype}{', secret' if self.secret else ''}>"
