"""Source locations: every IR node remembers the ONNX node it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    """The ONNX node name and op type a value comes from (kept through every pass)."""

    name: str
    op_type: str

    def describe(self) -> str:
        if self.name and self.op_type:
            return f"node '{self.name}' ({self.op_type})"
        return f"node '{self.name or '?'}' ({self.op_type or '?'})"


UNKNOWN_LOCATION = Location("", "")
