"""Each backend's pipeline, as a tuple of pass names (DESIGN.md, Pipelines)."""

from __future__ import annotations

from fhec.ir.errors import FhecError

COMMON_PIPELINE: tuple[str, ...] = (
    "infer-shapes",
    "fold-constants",
    "fold-batchnorm",
    "canonicalize",
    "fold-constants",
    "eliminate-dead-code",
    "annotate-secrecy",
    "annotate-ranges",
)

PIPELINES: dict[str, tuple[str, ...]] = {
    "reference": COMMON_PIPELINE,
    "ckks": (
        *COMMON_PIPELINE,
        "annotate-dot-magnitudes",
        "split-epilogue-ckks",
        "decompose-max-softmax-ckks",
        "approximate-activations",
        "expand-polynomials-ckks",
        "pack-slots-ckks",
        "insert-rescale-ckks",
        "insert-mod-switch-ckks",
        "insert-relinearize-ckks",
        "select-params-ckks",
        "select-rotation-keys-ckks",
        "validate-levels-ckks",
        "validate-scales-ckks",
    ),
    "tfhe": (
        *COMMON_PIPELINE,
        "quantize-tfhe",
        "lower-to-integer",
        "round-accumulators",
        "annotate-bit-widths",
    ),
}


def pipeline_for(backend: str) -> tuple[str, ...]:
    if backend not in PIPELINES:
        raise FhecError(
            f"unknown backend {backend!r}", hint=f"choose one of: {', '.join(sorted(PIPELINES))}"
        )
    return PIPELINES[backend]
