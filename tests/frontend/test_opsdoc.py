"""docs/ops.md is generated from the converter table and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx

from fhec.frontend.opsdoc import render
from fhec.frontend.registry import ConverterEntry, supported_ops

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def _entry(op_type: str, since: int, notes: str = "", domain: str = "") -> ConverterEntry:
    def convert(node: onnx.NodeProto, ctx: object) -> list[int]:
        return []

    return ConverterEntry(domain, op_type, since, convert, notes)  # type: ignore[arg-type]


def test_docs_ops_md_is_up_to_date() -> None:
    assert DOCS.read_text() == render(), "docs/ops.md is out of date: run `make docs`"


def test_every_converter_has_a_row() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| ai.onnx")]
    pairs = {(e.domain or "ai.onnx", e.op_type) for e in supported_ops()}
    assert len(rows) == len(pairs)
    for domain, op_type in pairs:
        assert any(row.startswith(f"| {domain} | {op_type} |") for row in rows), op_type


def test_rows_are_sorted_and_group_opset_versions() -> None:
    entries = [
        _entry("ZipMap", 1, "tensor out", domain="ai.onnx.ml"),
        _entry("Squeeze", 13, "axes input"),
        _entry("Squeeze", 1, "axes attribute"),
        _entry("Add", 7),
        _entry("Pad", 11, "constant | only"),
        _entry("Pad", 18, "constant | only"),
    ]
    rows = [line for line in render(entries).splitlines() if line.startswith("| ai.onnx")]
    assert rows == [
        "| ai.onnx | Add | 7 |  |",
        "| ai.onnx | Pad | 11, 18 | constant \\| only |",
        "| ai.onnx | Squeeze | 1, 13 | 1: axes attribute<br>13: axes input |",
        "| ai.onnx.ml | ZipMap | 1 | tensor out |",
    ]


def test_module_prints_the_page() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fhec.frontend.opsdoc"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == render()
