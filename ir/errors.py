"""Errors of the compiler: the user's (actionable, one line) and our own."""

from __future__ import annotations

from fhec.ir.location import Location


class FhecError(Exception):
    """A problem the user can fix: shown as one `error:` line, exit code 2, no traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split("\n"))


class CompileError(FhecError):
    """The model cannot be compiled as given; names the ONNX node and op where there is one."""

    def __init__(
        self, message: str, location: Location | None = None, *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.location = location

    def __str__(self) -> str:
        where = ""
        if self.location is not None and (self.location.name or self.location.op_type):
            where = f"{self.location.describe()}: "
        return where + super().__str__()


class InputError(FhecError):
    """Run-time inputs (arrays, .npz files, options) that do not fit the compiled model."""


class ArtifactError(FhecError):
    """A saved artifact that is missing, corrupted, of another format version or another context."""


class InternalCompilerError(Exception):
    """A bug in fhec itself, not in the user's model: names the pass that found it."""

    def __init__(self, message: str, pass_name: str = "") -> None:
        prefix = f"[{pass_name}] " if pass_name else ""
        super().__init__(f"internal compiler error: {prefix}{message}")
        self.pass_name = pass_name
