"""The pass framework: passes as frozen dataclasses, a registry, pipelines of names.

A pass's options are its dataclass fields, written `name{opt=value,...}` in a
pipeline string. Three kinds (HEIR's discipline): `annotate` passes only add
annotations, `validate` passes never change the graph, `transform` passes rewrite
and document what they require and establish.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypeVar

import numpy as np

from fhec.ir.attributes import coerce, field_hints
from fhec.ir.errors import FhecError, InternalCompilerError
from fhec.ir.graph import Module
from fhec.ir.verifier import verify


class PassKind(StrEnum):
    ANNOTATE = "annotate"
    TRANSFORM = "transform"
    VALIDATE = "validate"


Sample = Mapping[str, np.ndarray]


@dataclass(slots=True)
class PassContext:
    """What passes may read besides the module: calibration samples (each a complete
    input dict matching the function's input types), and notes for the report."""

    calibration: Sequence[Sample] = ()
    notes: dict[str, str] = field(default_factory=dict)


class Pass:
    """Base of all passes. Subclasses are `@register_pass` frozen dataclasses."""

    __slots__ = ()

    name: ClassVar[str]
    kind: ClassVar[PassKind]

    def run(self, module: Module, context: PassContext) -> None:
        """Rewrite or annotate `module` in place."""
        raise NotImplementedError

    def spelled(self) -> str:
        options = field_hints(type(self))
        if not options:
            return self.name
        values = ",".join(f"{k}={spell_option(getattr(self, k))}" for k in options)
        return f"{self.name}{{{values}}}"


def spell_option(value: object) -> str:
    """One option value as a pipeline string writes it: booleans lowercase, and text
    holding a comma or a brace double-quoted (see `_parse_options`)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f'"{text}"' if "," in text or "}" in text else text


PASS_REGISTRY: dict[str, type[Pass]] = {}
PassT = TypeVar("PassT", bound=type[Pass])


def register_pass(cls: PassT) -> PassT:
    if cls.name in PASS_REGISTRY and PASS_REGISTRY[cls.name] is not cls:
        raise ValueError(f"pass {cls.name} registered twice")
    PASS_REGISTRY[cls.name] = cls
    return cls


_PASS_SPEC = re.compile(r"\s*([a-z0-9-]+)\s*(?:\{([^}]*)\})?\s*")


def parse_pipeline(text: str) -> list[Pass]:
    """`"infer-shapes,annotate-ranges{margin=0.1}"` -> pass instances."""
    import fhec.passes  # noqa: F401  (fills the registry)

    passes: list[Pass] = []
    for spec in _split_top_level(text):
        match = _PASS_SPEC.fullmatch(spec)
        if match is None:
            raise FhecError(f"cannot read pass {spec!r}", hint="write name or name{opt=value}")
        passes.append(make_pass(match.group(1), _parse_options(match.group(2) or "")))
    return passes


def make_pass(name: str, options: Mapping[str, str] | None = None) -> Pass:
    import fhec.passes  # noqa: F401

    cls = PASS_REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(PASS_REGISTRY))
        raise FhecError(f"unknown pass {name!r}", hint=f"known passes: {known}")
    hints = field_hints(cls)
    values: dict[str, object] = {}
    for key, raw in (options or {}).items():
        if key not in hints:
            raise FhecError(
                f"pass {name!r} has no option {key!r}", hint=f"options: {sorted(hints)}"
            )
        try:
            values[key] = coerce(parse_literal(raw), hints[key])
        except (TypeError, ValueError) as exc:
            raise FhecError(f"pass {name!r} option {key}={raw!r}: {exc}") from None
    return cls(**values)


def run_pipeline(
    module: Module,
    passes: Sequence[Pass],
    context: PassContext | None = None,
    *,
    verify_each: bool = True,
    after_each: Callable[[Pass, Module], None] | None = None,
) -> Module:
    """Run `passes` on a copy of `module`; returns the copy. Checks each pass kept its
    promise: verified IR after every pass, and annotate/validate passes left the
    graph's structure as it was."""
    module = module.copy()
    context = context or PassContext()
    for item in passes:
        before = _structure(module) if item.kind is not PassKind.TRANSFORM else None
        try:
            item.run(module, context)
        except (FhecError, InternalCompilerError):
            raise
        except Exception as exc:  # a bug in the pass: say which
            raise InternalCompilerError(f"{type(exc).__name__}: {exc}", item.name) from exc
        if verify_each:
            verify(module, item.name)
        if before is not None and _structure(module) != before:
            raise InternalCompilerError(f"a {item.kind} pass changed the graph", item.name)
        if after_each is not None:
            after_each(item, module)
    return module


def _structure(module: Module) -> tuple[object, ...]:
    """The module with annotations left out (what annotate passes must not change)."""
    name, nodes, outputs = module.function.canonical()
    assert isinstance(nodes, tuple)
    bare = tuple((n.op, n.type, n.location, ops) for n, ops in nodes)
    return (name, bare, outputs)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


_OPTION = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("[^"]*"|[^,]*)\s*(?:,|$)')


def _parse_options(text: str) -> dict[str, str]:
    """`a=1, b="x,y"`: values holding commas are double-quoted."""
    options: dict[str, str] = {}
    position = 0
    while position < len(text.strip()):
        match = _OPTION.match(text, position)
        if match is None:
            item = text[position:].split(",")[0].strip()
            raise FhecError(f"pass option {item!r} needs a value", hint='write opt=value')
        value = match.group(2).strip()
        options[match.group(1)] = value[1:-1] if value.startswith('"') else value
        position = match.end()
    return options


def parse_literal(raw: str) -> object:
    """An option's text as a bool, int or float where it reads as one, else the text."""
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


