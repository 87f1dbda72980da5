"""The base of analysis results attached to values, and its registry."""

from __future__ import annotations

from dataclasses import fields
from typing import ClassVar, TypeVar


class Annotation:
    """Base class of analysis results attached to values; printed as `#key{...}`."""

    __slots__ = ()

    key: ClassVar[str]

    def attributes(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]



ANNOTATION_REGISTRY: dict[str, type[Annotation]] = {}

AnnotationT = TypeVar("AnnotationT", bound=type[Annotation])


def register_annotation(cls: AnnotationT) -> AnnotationT:
    if cls.key in ANNOTATION_REGISTRY and ANNOTATION_REGISTRY[cls.key] is not cls:
        raise ValueError(f"annotation {cls.key} registered twice")
    ANNOTATION_REGISTRY[cls.key] = cls
    return cls
