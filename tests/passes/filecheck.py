"""A small FileCheck (the subset of LLVM's FileCheck these tests use), and .ir case files.

Directives, one per `//` comment line, matched in order against the printed output:

    // CHECK: pattern       on the line of the previous match (after it) or any later line
    // CHECK-NEXT: pattern  on the line right after the previous match
    // CHECK-SAME: pattern  on the same line as the previous match, after it
    // CHECK-NOT: pattern   nowhere between the previous match and the next one (or the end)

A pattern is literal text in which a run of spaces matches any whitespace; `{{regex}}`
is a regular expression, `[[NAME:regex]]` captures what it matches as NAME and
`[[NAME]]` matches the text captured before. A pattern never spans lines.

A case file holds `// RUN: <pipeline>`, optionally `// ERROR: <text>` (the pipeline
must raise an FhecError whose message contains it), the directives, and IR text: every
line that is not a `//` comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_DIRECTIVE = re.compile(r"^\s*//\s*(CHECK(?:-NEXT|-NOT|-SAME)?|RUN|ERROR):(.*)$")
_TOKEN = re.compile(r"\{\{(.*?)\}\}|\[\[([A-Za-z_]\w*)(?::(.*?))?\]\]")


class FileCheckError(AssertionError):
    """A directive did not hold; the message shows the directive and the output."""


@dataclass(frozen=True, slots=True)
class Directive:
    kind: str  # CHECK, CHECK-NEXT, CHECK-SAME or CHECK-NOT
    pattern: str
    line: int  # in the case file, for messages


@dataclass(frozen=True, slots=True)
class Case:
    pipeline: str
    ir: str
    directives: tuple[Directive, ...]
    error: str | None


def read_case(path: Path) -> Case:
    pipeline, error, directives, ir_lines = None, None, [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        found = _DIRECTIVE.match(line)
        if found is None:
            if not line.lstrip().startswith("//"):
                ir_lines.append(line)
            continue
        kind, text = found.group(1), found.group(2).strip()
        if kind == "RUN":
            pipeline = text
        elif kind == "ERROR":
            error = text
        else:
            directives.append(Directive(kind, text, number))
    if pipeline is None:
        raise ValueError(f"{path}: no '// RUN: <pipeline>' line")
    if error is None and not any(d.kind != "CHECK-NOT" for d in directives):
        raise ValueError(f"{path}: no CHECK, CHECK-NEXT or CHECK-SAME directive")
    return Case(pipeline, "\n".join(ir_lines) + "\n", tuple(directives), error)


def check(output: str, directives: tuple[Directive, ...] | list[Directive]) -> None:
    """Raise FileCheckError unless `output` satisfies `directives`."""
    lines = output.splitlines()
    variables: dict[str, str] = {}
    line, column, matched_line = 0, 0, -1
    forbidden: list[Directive] = []
    for directive in directives:
        if directive.kind == "CHECK-NOT":
            forbidden.append(directive)
            continue
        regex = _compile(directive, variables)
        if directive.kind == "CHECK":
            found = _search(lines, regex, line, column, len(lines))
        elif matched_line < 0:
            raise FileCheckError(f"line {directive.line}: {directive.kind} needs a CHECK before it")
        elif directive.kind == "CHECK-NEXT":
            found = _search(lines, regex, matched_line + 1, 0, matched_line + 2)
        else:
            found = _search(lines, regex, matched_line, column, matched_line + 1)
        if found is None:
            _fail(directive, "no match", lines, line)
        found_line, match = found
        for item in forbidden:
            _refute(item, lines, variables, (line, column), (found_line, match.start()))
        forbidden = []
        variables.update({k: v for k, v in match.groupdict().items() if v is not None})
        line, column, matched_line = found_line, match.end(), found_line
    for item in forbidden:
        _refute(item, lines, variables, (line, column), (len(lines), 0))


def _compile(directive: Directive, variables: dict[str, str]) -> re.Pattern[str]:
    parts, start = [], 0
    for token in _TOKEN.finditer(directive.pattern):
        parts.append(_literal(directive.pattern[start : token.start()]))
        regex, name, definition = token.groups()
        if regex is not None:
            parts.append(f"(?:{regex})")
        elif definition is not None:
            parts.append(f"(?P<{name}>{definition})")
        elif name in variables:
            parts.append(re.escape(variables[name]))
        else:
            raise FileCheckError(f"line {directive.line}: [[{name}]] is used before it is defined")
        start = token.end()
    parts.append(_literal(directive.pattern[start:]))
    return re.compile("".join(parts))


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(piece) for piece in re.split(r"\s+", text))


def _search(
    lines: list[str], regex: re.Pattern[str], line: int, column: int, stop: int
) -> tuple[int, re.Match[str]] | None:
    for index in range(line, min(stop, len(lines))):
        match = regex.search(lines[index], column if index == line else 0)
        if match is not None:
            return index, match
    return None


def _refute(
    directive: Directive,
    lines: list[str],
    variables: dict[str, str],
    start: tuple[int, int],
    end: tuple[int, int],
) -> None:
    regex = _compile(directive, variables)
    for index in range(start[0], min(end[0] + 1, len(lines))):
        text = lines[index][: end[1]] if index == end[0] else lines[index]
        if regex.search(text, start[1] if index == start[0] else 0):
            _fail(directive, "found where it must not be", lines, index)


def _fail(directive: Directive, what: str, lines: list[str], near: int) -> None:
    listing = "\n".join(
        f"{'>' if i == near else ' '} {i + 1:3d}| {text}" for i, text in enumerate(lines)
    )
    raise FileCheckError(
        f"line {directive.line}: {directive.kind}: {directive.pattern!r}: {what} "
        f"(output line {near + 1} marked)\n{listing}"
    )
