"""The FileCheck-style pass tests: every tests/passes/<pass-name>/*.ir case.

Each case's IR is parsed, run through its `// RUN:` pipeline with the verifier after
every pass, printed, and matched against its directives (see filecheck.py); the
printed result must also parse back to the same module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from filecheck import check, read_case

from fhec.ir.errors import FhecError
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.passes import COMMON_PIPELINE, parse_pipeline, run_pipeline

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("*/*.ir"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case(path: Path) -> None:
    case = read_case(path)
    module = parse_module(case.ir)
    passes = parse_pipeline(case.pipeline)
    if case.error is not None:
        with pytest.raises(FhecError) as raised:
            run_pipeline(module, passes, verify_each=True)
        assert case.error in str(raised.value)
        return
    result = run_pipeline(module, passes, verify_each=True)
    output = print_module(result)
    check(output, case.directives)
    assert parse_module(output) == result


@pytest.mark.parametrize("pass_name", sorted(set(COMMON_PIPELINE)))
def test_every_common_pass_has_cases(pass_name: str) -> None:
    cases = list((HERE / pass_name).glob("*.ir"))
    assert len(cases) >= 3, f"tests/passes/{pass_name} needs at least 3 .ir cases"
    assert all(pass_name in read_case(p).pipeline for p in cases)
