"""Calibration data: the user's dicts of samples, checked and cut to the compiled input shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fhec.ir.errors import InputError
from fhec.ir.signature import Signature
from fhec.runtime.batching import check_inputs, compiled_batch_size

CalibrationData = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]

WHAT = "calibration input"


def calibration_samples(
    signature: Signature, calibration: CalibrationData | None
) -> list[dict[str, np.ndarray]]:
    """Complete input dicts of exactly the compiled shapes (samples chunked on the batch
    axis, the last chunk padded by repeating its first sample, never with zeros that
    would widen the calibrated ranges)."""
    return calibration_set(signature, calibration)[0]


def calibration_set(
    signature: Signature, calibration: CalibrationData | None
) -> tuple[list[dict[str, np.ndarray]], int]:
    """The chunks `calibration_samples` gives, and how many samples the user gave."""
    if calibration is None:
        return [], 0
    chunks: list[dict[str, np.ndarray]] = []
    total = 0
    for batch in _batches(calibration):
        checked, count = check_inputs(signature, batch, WHAT)
        _check_finite(checked)
        chunks.extend(_chunks(signature, checked, count))
        total += count
    return chunks, total


def _batches(calibration: object) -> list[Mapping[str, np.ndarray]]:
    """The user's dict, or list of dicts, as a list; anything else is an InputError."""
    hint = "pass {input name: array} with the samples on the batch axis, or a list of such dicts"
    if isinstance(calibration, Mapping):
        return [calibration]
    if isinstance(calibration, str | bytes | np.ndarray) or not isinstance(calibration, Sequence):
        raise InputError(
            f"calibration must be a dict of arrays or a list of such dicts, "
            f"got {type(calibration).__name__}",
            hint=hint,
        )
    batches = list(calibration)
    if not batches:
        raise InputError("calibration is an empty list", hint=hint)
    for index, batch in enumerate(batches):
        if not isinstance(batch, Mapping):
            raise InputError(
                f"calibration item {index} is of type {type(batch).__name__}, not a dict of arrays",
                hint=hint,
            )
    return batches


def _check_finite(inputs: Mapping[str, np.ndarray]) -> None:
    # NaN or infinity would make every calibrated range downstream meaningless.
    for name, array in inputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InputError(
                f"{WHAT} {name!r} holds NaN or infinite values",
                hint="remove those samples from the calibration data",
            )


def _chunks(
    signature: Signature, inputs: dict[str, np.ndarray], count: int
) -> list[dict[str, np.ndarray]]:
    size = compiled_batch_size(signature)
    if size is None:
        return [inputs]
    chunks = []
    for start in range(0, count, size):
        chunk = {}
        for spec in signature.inputs:
            array = inputs[spec.name]
            if spec.batch_axis is not None:
                rows = [i if i < count else start for i in range(start, start + size)]
                array = np.take(array, rows, axis=spec.batch_axis)
            chunk[spec.name] = np.ascontiguousarray(array)
        chunks.append(chunk)
    return chunks
