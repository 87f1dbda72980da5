"""The interface of a compiled function: named inputs and outputs with their shapes.

`batch_axis` marks the axis that was symbolic in the source model: the compiled
graph fixes it to one size, and the runtime splits larger batches along it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.types import DType


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: DType
    batch_axis: int | None = None

    @property
    def batch_size(self) -> int | None:
        return None if self.batch_axis is None else self.shape[self.batch_axis]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "batch_axis": self.batch_axis,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TensorSpec:
        shape = data["shape"]
        batch_axis = data["batch_axis"]
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise ValueError(f"bad shape {shape!r}")
        if batch_axis is not None and not isinstance(batch_axis, int):
            raise ValueError(f"bad batch axis {batch_axis!r}")
        return cls(str(data["name"]), tuple(shape), DType(str(data["dtype"])), batch_axis)


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_json(self) -> dict[str, object]:
        return {
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Signature:
        inputs, outputs = data["inputs"], data["outputs"]
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise ValueError("signature needs lists of inputs and outputs")
        return cls(
            tuple(TensorSpec.from_json(s) for s in inputs),
            tuple(TensorSpec.from_json(s) for s in outputs),
        )
