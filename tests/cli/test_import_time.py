"""`import fhec` and `fhec --help` stay light: none of the heavy libraries load.

Checked through sys.modules in a fresh interpreter (and `-X importtime`'s list), not by
timing, so the test holds on a loaded machine.
"""

from __future__ import annotations

import subprocess
import sys

from cli_helpers import SCRIPT

HEAVY = ("torch", "concrete", "seal", "onnx", "onnxruntime")

REPORT_HEAVY = f"""
import sys
heavy = {HEAVY!r}
print("HEAVY:" + ",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _heavy_modules_after(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT_HEAVY], capture_output=True, text=True, check=True
    )
    report = done.stdout.strip().splitlines()[-1].removeprefix("HEAVY:")
    return [name for name in report.split(",") if name]


def test_import_fhec_loads_no_heavy_module() -> None:
    assert _heavy_modules_after("import fhec") == []


def test_importtime_of_fhec_lists_no_heavy_module() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import fhec"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "fhec" in imported
    assert [name for name in imported if name.split(".")[0] in HEAVY] == []


def test_help_and_version_load_no_heavy_module() -> None:
    for flag in ("--help", "--version"):
        code = (
            "from fhec.cli import main\n"
            "try:\n"
            f"    main([{flag!r}])\n"
            "except SystemExit as exit:\n"
            "    assert exit.code == 0, exit.code\n"
        )
        assert _heavy_modules_after(code) == [], flag


def test_fhec_help_answers() -> None:
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("compile", "run", "inspect", "demo"):
        assert command in done.stdout
    assert done.stderr == ""
