"""The FileCheck matcher itself: it must fail when a directive does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from filecheck import Directive, FileCheckError, check, read_case

OUTPUT = """\
%0 = func.input() : tensor<4xf32>
%1 = arith.add(%0, %0) : tensor<4xf32>
%2 = nn.relu(%1) : tensor<4xf32>
return %2 as "y"
"""


def directives(*items: str) -> list[Directive]:
    parsed = []
    for number, item in enumerate(items, start=1):
        kind, _, pattern = item.partition(": ")
        parsed.append(Directive(kind, pattern, number))
    return parsed


@pytest.mark.parametrize(
    "items",
    [
        ("CHECK: arith.add", "CHECK-NEXT: nn.relu", "CHECK-NEXT: return"),
        ("CHECK: func.input", "CHECK-NOT: nn.relu", "CHECK: arith.add"),
        ("CHECK: [[X:%[0-9]+]] = func.input", "CHECK: arith.add([[X]], [[X]])"),
        ("CHECK: arith.add", "CHECK-SAME: tensor<{{[0-9]+}}xf32>", "CHECK-NOT: arith"),
        ("CHECK: %1 =   arith.add",),
    ],
)
def test_holds(items: tuple[str, ...]) -> None:
    check(OUTPUT, directives(*items))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (("CHECK: nn.relu", "CHECK: arith.add"), "no match"),  # order matters
        (("CHECK: func.input", "CHECK-NEXT: nn.relu"), "no match"),
        (("CHECK: func.input", "CHECK-NOT: arith.add", "CHECK: nn.relu"), "must not"),
        (("CHECK: nn.relu", "CHECK-NOT: return"), "must not"),
        (("CHECK: [[X:%[0-9]+]] = nn.relu", "CHECK: arith.add([[X]]"), "no match"),
        (("CHECK: arith.add([[Y]]",), "used before it is defined"),
        (("CHECK-NEXT: func.input",), "needs a CHECK"),
        (("CHECK: nn.relu", "CHECK-SAME: arith"), "no match"),
        (("CHECK: arith.sub",), "no match"),
    ],
)
def test_fails(items: tuple[str, ...], message: str) -> None:
    with pytest.raises(FileCheckError, match=message):
        check(OUTPUT, directives(*items))


def test_read_case_splits_directives_from_ir(tmp_path: Path) -> None:
    path = tmp_path / "case.ir"
    path.write_text("// RUN: canonicalize\nmodule {\n// CHECK: module\n}\n")
    case = read_case(path)
    assert case.pipeline == "canonicalize"
    assert case.ir == "module {\n}\n"
    assert [d.kind for d in case.directives] == ["CHECK"]


def test_read_case_needs_run_and_check(tmp_path: Path) -> None:
    path = tmp_path / "case.ir"
    path.write_text("// CHECK: x\n")
    with pytest.raises(ValueError, match="RUN"):
        read_case(path)
    path.write_text("// RUN: canonicalize\n// CHECK-NOT: x\n")
    with pytest.raises(ValueError, match="no CHECK"):
        read_case(path)
