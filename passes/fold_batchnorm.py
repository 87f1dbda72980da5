"""fold-batchnorm: PLACEHOLDER (no-op until written)."""

from __future__ import annotations

from dataclasses import dataclass

from fhec.ir.graph import Module
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class FoldBatchnorm(Pass):
    name = "fold-batchnorm"
    kind = PassKind.TRANSFORM

    def run(self, module: Module, context: PassContext) -> None:
        pass
