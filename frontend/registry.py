"""The converter table: one small function per ONNX op, keyed by (domain, op type, opset).

A converter registered `since=N` handles the op from opset N until a later
registration for the same op takes over. `docs/ops.md` is generated from this
table (`python -m fhec.frontend.opsdoc`), never written by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from fhec.frontend.context import ConversionContext
    from fhec.ir.graph import ValueId

Converter = Callable[["onnx.NodeProto", "ConversionContext"], "Sequence[ValueId | None]"]

ML_DOMAIN = "ai.onnx.ml"


@dataclass(frozen=True, slots=True)
class ConverterEntry:
    domain: str
    op_type: str
    since: int
    convert: Converter
    notes: str


CONVERTERS: dict[tuple[str, str, int], ConverterEntry] = {}


def converter(
    op_type: str, *, since: int = 1, domain: str = "", notes: str = ""
) -> Callable[[Converter], Converter]:
    """Register `fn` as the converter of `domain::op_type` from opset `since` on.

    `notes` is the one line of limits shown in docs/ops.md (e.g. "constant exponent only").
    """

    def register(fn: Converter) -> Converter:
        key = (domain, op_type, since)
        if key in CONVERTERS:
            raise ValueError(f"converter for {key} registered twice")
        CONVERTERS[key] = ConverterEntry(domain, op_type, since, fn, notes)
        return fn

    return register


def lookup(domain: str, op_type: str, opset: int) -> ConverterEntry | None:
    """The converter for `op_type` at `opset`: the latest registered `since <= opset`."""
    domain = "" if domain == "ai.onnx" else domain
    candidates = [
        entry
        for (d, name, since), entry in CONVERTERS.items()
        if d == domain and name == op_type and since <= opset
    ]
    return max(candidates, key=lambda e: e.since, default=None)


def supported_ops() -> list[ConverterEntry]:
    import fhec.frontend.converters  # noqa: F401

    return sorted(CONVERTERS.values(), key=lambda e: (e.domain, e.op_type, e.since))
