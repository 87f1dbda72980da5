"""The concrete compilation options fhec exposes, as JSON-able data (saved in artifacts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from fhec.ir.attributes import coerce, field_hints
from fhec.ir.errors import FhecError

if TYPE_CHECKING:
    from concrete import fhe

# Keys of `build` options that belong to fhec.compile, not to concrete.
_NOT_CONCRETE = ("calibration", "batch_size")


@dataclass(frozen=True, slots=True)
class TfheConfig:
    """`p_error`: failure probability of one table lookup; `global_p_error`: of any
    lookup in a run (concrete's default, 1e-5); concrete sizes its parameters so both
    hold. Compressed evaluation keys are about half the bytes, at no run-time cost."""

    p_error: float | None = None
    global_p_error: float | None = 1e-5
    compress_evaluation_keys: bool = True
    security_level: int = 128

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> TfheConfig:
        hints = field_hints(cls)
        values: dict[str, object] = {}
        for key, value in options.items():
            if key in _NOT_CONCRETE:
                continue
            if key not in hints:
                raise FhecError(
                    f"the tfhe backend has no option {key!r}", hint=f"options: {sorted(hints)}"
                )
            values[key] = _from_text(key, value, hints[key]) if isinstance(value, str) else value
        return cls.from_json(values)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TfheConfig:
        config = cls(**data)  # type: ignore[arg-type]
        for name in ("p_error", "global_p_error"):
            value = getattr(config, name)
            if value is not None and (not isinstance(value, int | float) or not 0 < value < 1):
                raise FhecError(f"tfhe option {name}={value!r} must lie strictly between 0 and 1")
        if not isinstance(config.compress_evaluation_keys, bool):
            raise FhecError("tfhe option compress_evaluation_keys must be true or false")
        if config.security_level not in (128, 132):
            raise FhecError(f"tfhe option security_level={config.security_level!r}: 128 or 132")
        return config

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def concrete(self) -> fhe.Configuration:
        from concrete import fhe
        from concrete.fhe.compilation.configuration import SecurityLevel

        return fhe.Configuration(
            p_error=self.p_error,
            global_p_error=self.global_p_error,
            compress_evaluation_keys=self.compress_evaluation_keys,
            security_level=SecurityLevel(self.security_level),
            show_progress=False,
        )


def _from_text(key: str, text: str, hint: object) -> object:
    """An option written as text (`fhec compile --option tfhe.p_error=1e-9`) as its type."""
    from fhec.passes.base import parse_literal

    try:
        return coerce(parse_literal(text), hint)
    except (TypeError, ValueError) as exc:
        raise FhecError(f"tfhe option {key}={text!r}: {exc}") from None
