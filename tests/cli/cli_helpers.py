"""Run the real `fhec` command in a subprocess and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "fhec"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_fhec(*args: str | Path, cwd: Path) -> Result:
    """`fhec ARGS...` (the installed console script, else `python -m fhec`)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "fhec"]
    done = subprocess.run(
        [*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit code 2, exactly one `error:` line on stderr holding every fragment, no
    traceback. Returns the line."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


@dataclass(frozen=True)
class Workspace:
    """A folder of models, data files and one compiled artifact, shared by the tests."""

    root: Path

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def fhec(self, *args: str | Path) -> Result:
        return run_fhec(*args, cwd=self.root)
