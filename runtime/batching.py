"""Check run-time inputs against the compiled signature and split them into batches.

The compiled graph has static shapes. A model whose ONNX batch axis was symbolic
accepts any number of samples: they are cut into chunks of the compiled batch
size (the last one zero-padded), run chunk by chunk, and joined again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from fhec.backends.progress import progress
from fhec.ir.errors import InputError
from fhec.ir.signature import Signature, TensorSpec

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


def check_inputs(
    signature: Signature, inputs: Inputs, what: str = "input"
) -> tuple[dict[str, np.ndarray], int]:
    """Validated inputs cast to the compiled dtypes, and the number of samples they hold.

    `what` names the data in messages ("input", "calibration input").
    """
    if not isinstance(inputs, Mapping):
        raise InputError(
            f"{what}s must be a dict {{input name: array}}, got {type(inputs).__name__}",
            hint=f"the model's inputs are: {_names(signature)}",
        )
    names = {s.name for s in signature.inputs}
    for name in inputs:
        if name not in names:
            raise InputError(
                f"unknown {what} {name!r}", hint=f"the model's inputs are: {_names(signature)}"
            )
    checked: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for spec in signature.inputs:
        if spec.name not in inputs:
            raise InputError(
                f"missing {what} {spec.name!r}",
                hint=f"give an array of shape {_shape(spec)} and type {spec.dtype.numpy}",
            )
        array = _checked_array(spec, inputs[spec.name], what)
        checked[spec.name] = array
        if spec.batch_axis is not None:  # inputs without a batch axis hold one sample
            counts[spec.name] = array.shape[spec.batch_axis]
    if len(set(counts.values())) > 1:
        held = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise InputError(
            f"{what}s hold different numbers of samples ({held})",
            hint="give every input the same number of samples on its batch axis",
        )
    samples = next(iter(counts.values()), 1)
    if samples == 0:
        raise InputError(f"{what}s hold no samples", hint="give at least one sample")
    return checked, samples


def run_batched(
    signature: Signature,
    inputs: Inputs,
    run_chunk: Callable[[dict[str, np.ndarray]], Outputs],
    *,
    samples_per_run: int | None = None,
) -> Outputs:
    """Outputs of `run_chunk` over chunks of the compiled batch size (the last one padded),
    or, with `samples_per_run`, over chunks of up to that many samples (none padded)."""
    checked, samples = check_inputs(signature, inputs)
    size = compiled_batch_size(signature)
    if size is None:
        return run_chunk(checked)
    pad = samples_per_run is None
    size = size if samples_per_run is None else samples_per_run
    pieces: list[Outputs] = []
    for start in progress(range(0, samples, size), "running", "batch"):
        chunk = {s.name: _chunk(s, checked[s.name], start, size, pad) for s in signature.inputs}
        pieces.append(run_chunk(chunk))
    return _join(signature, pieces, samples)


def compiled_batch_size(signature: Signature) -> int | None:
    """The batch size the graph was compiled for; None when no input has a batch axis."""
    for spec in signature.inputs:
        if spec.batch_axis is not None:
            return spec.shape[spec.batch_axis]
    return None


def _checked_array(spec: TensorSpec, value: object, what: str) -> np.ndarray:
    where = f"{what} {spec.name!r}"
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, odd objects
        raise InputError(f"{where} is not an array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{where} has element type {array.dtype}, expected numbers",
            hint=f"give an array of type {spec.dtype.numpy}",
        )
    if array.dtype.kind == "f" and spec.dtype.numpy.kind in "iub":
        raise InputError(
            f"{where} holds floats ({array.dtype}), the model expects {spec.dtype.numpy} values",
            hint=f"convert it with .astype({spec.dtype.numpy.name!r}) if the values are whole",
        )
    expected = spec.shape
    fits = array.ndim == len(expected) and all(
        axis == spec.batch_axis or got == want
        for axis, (got, want) in enumerate(zip(array.shape, expected, strict=True))
    )
    if not fits:
        raise InputError(
            f"{where} has shape {array.shape}, expected {_shape(spec)}",
            hint="reshape the data to the model's input shape",
        )
    _check_integer_range(where, array, spec.dtype.numpy)
    return array.astype(spec.dtype.numpy, copy=False)


def _check_integer_range(where: str, array: np.ndarray, target: np.dtype[np.generic]) -> None:
    """Integers that would wrap around when cast to the model's narrower type are an error."""
    if target.kind not in "iu" or array.dtype.kind not in "iu" or array.size == 0:
        return
    info = np.iinfo(target.type)  # type: ignore[type-var]
    low, high = int(array.min()), int(array.max())
    if low < info.min or high > info.max:
        raise InputError(
            f"{where} holds values in [{low}, {high}], outside the range of {target} "
            f"[{info.min}, {info.max}]"
        )


def _chunk(
    spec: TensorSpec, array: np.ndarray, start: int, size: int, pad: bool = True
) -> np.ndarray:
    if spec.batch_axis is None:
        return array
    piece = np.take(
        array, range(start, min(start + size, array.shape[spec.batch_axis])), axis=spec.batch_axis
    )
    missing = size - piece.shape[spec.batch_axis]
    if missing and pad:
        widths = [(0, 0)] * piece.ndim
        widths[spec.batch_axis] = (0, missing)
        piece = np.pad(piece, widths)
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


def _names(signature: Signature) -> str:
    return ", ".join(f"{s.name} {_shape(s)}" for s in signature.inputs) or "(none)"


def _shape(spec: TensorSpec) -> str:
    dims = ["N" if axis == spec.batch_axis else str(d) for axis, d in enumerate(spec.shape)]
    text = "(" + ", ".join(dims) + ")"
    return text + (" with N samples" if spec.batch_axis is not None else "")
