"""Calibration data: the user's dicts of samples, cut to the compiled input shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fhec.ir.errors import InputError
from fhec.ir.signature import Signature
from fhec.runtime.batching import check_inputs

CalibrationData = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]


def calibration_samples(
    signature: Signature, calibration: CalibrationData | None
) -> list[dict[str, np.ndarray]]:
    """Complete input dicts of exactly the compiled shapes (samples chunked on the batch
    axis, the last chunk padded by repeating its first sample, never with zeros that
    would widen the calibrated ranges)."""
    if calibration is None:
        return []
    batches = [calibration] if isinstance(calibration, Mapping) else list(calibration)
    samples: list[dict[str, np.ndarray]] = []
    for batch in batches:
        if not isinstance(batch, Mapping):
            raise InputError("calibration must be a dict of arrays or a list of such dicts")
        checked, count = check_inputs(signature, batch)
        samples.extend(_chunks(signature, checked, count))
    return samples


def _chunks(
    signature: Signature, inputs: dict[str, np.ndarray], count: int
) -> list[dict[str, np.ndarray]]:
    batched = [s for s in signature.inputs if s.batch_axis is not None]
    if not batched:
        return [inputs]
    size = batched[0].shape[batched[0].batch_axis or 0]
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
