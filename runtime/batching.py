"""Check run-time inputs against the compiled signature and split them into batches.

The compiled graph has static shapes. A model whose ONNX batch axis was symbolic
accepts any number of samples: they are cut into chunks of the compiled batch
size (the last one zero-padded), run chunk by chunk, and joined again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from fhec.ir.errors import InputError
from fhec.ir.signature import Signature, TensorSpec

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


def check_inputs(signature: Signature, inputs: Inputs) -> tuple[dict[str, np.ndarray], int]:
    """Validated inputs cast to the compiled dtypes, and the number of samples they hold."""
    names = {s.name for s in signature.inputs}
    for name in inputs:
        if name not in names:
            raise InputError(
                f"unknown input {name!r}", hint=f"the model's inputs are: {', '.join(sorted(names))}"
            )
    checked: dict[str, np.ndarray] = {}
    counts: set[int] = set()
    for spec in signature.inputs:
        if spec.name not in inputs:
            raise InputError(f"missing input {spec.name!r}", hint=f"expected shape {_shape(spec)}")
        array = _checked_array(spec, inputs[spec.name])
        checked[spec.name] = array
        counts.add(array.shape[spec.batch_axis] if spec.batch_axis is not None else 1)
    if len(counts) > 1:
        raise InputError(f"inputs hold different numbers of samples: {sorted(counts)}")
    return checked, counts.pop() if counts else 1


def run_batched(
    signature: Signature,
    inputs: Inputs,
    run_chunk: Callable[[dict[str, np.ndarray]], Outputs],
) -> Outputs:
    checked, samples = check_inputs(signature, inputs)
    batched = [s for s in signature.inputs if s.batch_axis is not None]
    if not batched:
        return run_chunk(checked)
    size = batched[0].shape[batched[0].batch_axis or 0]
    pieces: list[Outputs] = []
    for start in range(0, samples, size):
        chunk = {s.name: _chunk(s, checked[s.name], start, size) for s in signature.inputs}
        pieces.append(run_chunk(chunk))
    return _join(signature, pieces, samples)


def _checked_array(spec: TensorSpec, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"input {spec.name!r} has element type {array.dtype}, expected numbers")
    if array.dtype.kind == "f" and spec.dtype.numpy.kind in "iub":
        raise InputError(
            f"input {spec.name!r} holds floats, the model expects {spec.dtype.numpy} values"
        )
    expected = spec.shape
    fits = array.ndim == len(expected) and all(
        axis == spec.batch_axis or got == want
        for axis, (got, want) in enumerate(zip(array.shape, expected, strict=True))
    )
    if not fits:
        raise InputError(
            f"input {spec.name!r} has shape {array.shape}, expected {_shape(spec)}",
        )
    return array.astype(spec.dtype.numpy, copy=False)


def _chunk(spec: TensorSpec, array: np.ndarray, start: int, size: int) -> np.ndarray:
    if spec.batch_axis is None:
        return array
    piece = np.take(array, range(start, min(start + size, array.shape[spec.batch_axis])),
                    axis=spec.batch_axis)
    missing = size - piece.shape[spec.batch_axis]
    if missing:
        pad = [(0, 0)] * piece.ndim
        pad[spec.batch_axis] = (0, missing)
        piece = np.pad(piece, pad)
    return np.ascontiguousarray(piece)


def _join(signature: Signature, pieces: list[Outputs], samples: int) -> Outputs:
    joined: Outputs = {}
    for spec in signature.outputs:
        if spec.batch_axis is None:
            joined[spec.name] = pieces[0][spec.name]
            continue
        whole = np.concatenate([p[spec.name] for p in pieces], axis=spec.batch_axis)
        joined[spec.name] = np.take(whole, range(samples), axis=spec.batch_axis)
    return joined


def _shape(spec: TensorSpec) -> str:
    dims = ["N" if axis == spec.batch_axis else str(d) for axis, d in enumerate(spec.shape)]
    return "(" + ", ".join(dims) + ")" + (" where N is any batch size" if spec.batch_axis is not None else "")
