"""FileCheck cases of the CKKS passes: tests/ckks/passes/<pass-name>/*.ir.

The same format and matcher as tests/passes (see tests/passes/filecheck.py): IR in, the
`// RUN:` pipeline with the verifier after every pass, the printed result checked
against the directives and parsed back to the same module. An `// ERROR:` case must
raise an FhecError (the user's) or an InternalCompilerError (a validation pass's
finding) whose message holds the text.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fhec.ir.errors import FhecError, InternalCompilerError
from fhec.ir.parser import parse_module
from fhec.ir.printer import print_module
from fhec.passes import parse_pipeline, pipeline_for, run_pipeline

HERE = Path(__file__).parent
CASES = sorted((HERE / "passes").glob("*/*.ir"))
CKKS_PASSES = sorted(
    {*pipeline_for("ckks"), "annotate-states-ckks"} - set(pipeline_for("reference"))
)


def _filecheck() -> ModuleType:
    path = HERE.parent / "passes" / "filecheck.py"
    spec = importlib.util.spec_from_file_location("ckks_filecheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


FILECHECK = _filecheck()


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_case(path: Path) -> None:
    case = FILECHECK.read_case(path)
    module = parse_module(case.ir)
    passes = parse_pipeline(case.pipeline)
    if case.error is not None:
        with pytest.raises((FhecError, InternalCompilerError)) as raised:
            run_pipeline(module, passes, verify_each=True)
        assert case.error in str(raised.value)
        return
    result = run_pipeline(module, passes, verify_each=True)
    output = print_module(result)
    FILECHECK.check(output, case.directives)
    assert parse_module(output) == result


@pytest.mark.parametrize("pass_name", CKKS_PASSES)
def test_every_ckks_pass_has_cases(pass_name: str) -> None:
    cases = list((HERE / "passes" / pass_name).glob("*.ir"))
    assert len(cases) >= 3, f"tests/ckks/passes/{pass_name} needs at least 3 .ir cases"
    assert all(pass_name in FILECHECK.read_case(p).pipeline for p in cases)
