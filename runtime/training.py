"""Running training steps: labels encoded for the loss, data cut into batches, the step
loop with its divergence check, and the tuned weights written back into the ONNX model.

A step function (`StepRunner`) takes the step IR's inputs by name (features, `label`,
the parameters, their velocities) and returns its outputs (the new parameters and
velocities, `loss`); the reference backend interprets the IR, an FHE backend will
encrypt, evaluate and decrypt. Everything here is scheme-independent.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fhec.ir.errors import FhecError, InputError
from fhec.ir.graph import Module
from fhec.ir.ops.core import InputOp
from fhec.ir.signature import Signature, TensorSpec
from fhec.runtime.batching import check_inputs

if TYPE_CHECKING:
    import onnx

LABEL = "label"
LOSS = "loss"
# Divergence: the loss grows past this factor times the first step's loss (that loss
# taken as at least LOSS_FLOOR, so a near-zero start does not trip it on noise).
DIVERGENCE_FACTOR = 1e3
LOSS_FLOOR = 1e-3

Arrays = dict[str, np.ndarray]
StepRunner = Callable[[Arrays], Arrays]
OnStep = Callable[[int, float | None], None]


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """What the step's `label` input holds: the loss, and the input's shape (batch first)."""

    loss: str
    shape: tuple[int, ...]
    dtype: np.dtype[np.generic]

    @property
    def classes(self) -> int:
        return self.shape[1] if len(self.shape) == 2 else 1


def encode_labels(spec: LabelSpec, labels: object, samples: int) -> np.ndarray:
    """`labels` for `samples` samples as the step's label input (one-hot for cross-entropy)."""
    try:
        array = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise InputError(f"the labels are not an array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise InputError(f"the labels have element type {array.dtype}, expected numbers")
    if array.ndim == 0 or array.shape[0] != samples:
        held = "a scalar" if array.ndim == 0 else f"{array.shape[0]} samples"
        raise InputError(f"the labels hold {held}, the features {samples}",
                         hint="give one label per sample, on the first axis")
    per_sample = spec.shape[1:]
    if spec.loss == "cross-entropy":
        return _one_hot(array, spec.classes, samples).astype(spec.dtype)
    if not np.isfinite(array.astype(np.float64)).all():
        raise InputError("the labels hold NaN or infinite values")
    expected = (samples, *per_sample)
    if array.shape != expected and not (math.prod(per_sample) == 1 and array.size == samples):
        raise InputError(f"the labels have shape {array.shape}, the {spec.loss} loss on this "
                         f"output needs {expected}", hint="give labels shaped as the output")
    if spec.loss == "bce" and (array.min() < 0 or array.max() > 1):
        raise InputError(f"bce labels must lie in [0, 1], found [{array.min()}, {array.max()}]",
                         hint="give class 0 or 1 (or a probability) per sample")
    return array.reshape(samples, *per_sample).astype(spec.dtype)


def _one_hot(array: np.ndarray, classes: int, samples: int) -> np.ndarray:
    if array.shape not in ((samples,), (samples, 1)):
        raise InputError(f"cross-entropy labels are class indices of shape ({samples},), "
                         f"found shape {array.shape}", hint="give one class index per sample")
    flat = array.reshape(samples)
    if array.dtype.kind == "f" and not (np.isfinite(flat).all() and (flat == np.round(flat)).all()):
        raise InputError("cross-entropy labels must be whole class indices, found fractions "
                         "or NaN", hint=f"give integers in 0..{classes - 1}")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= classes:
        raise InputError(f"class indices must lie in 0..{classes - 1} for this {classes}-class "
                         f"output, found {low if low < 0 else high}",
                         hint="check the labels, or train an output with more classes")
    encoded = np.zeros((samples, classes))
    encoded[np.arange(samples), flat.astype(np.int64)] = 1.0
    return encoded


def split_labels(data: Mapping[str, np.ndarray], what: str) -> tuple[Arrays, np.ndarray]:
    """The features and the `label` array of a training-data dict."""
    if not isinstance(data, Mapping):
        raise InputError(f"{what} must be a dict {{name: array}} with a {LABEL!r} array")
    if LABEL not in data:
        raise InputError(f"{what} has no {LABEL!r} array",
                         hint=f"store the targets as {LABEL!r} beside the model's inputs "
                         f"({', '.join(sorted(data)) or 'none given'})")
    return {k: v for k, v in data.items() if k != LABEL}, np.asarray(data[LABEL])


def epoch_batches(samples: int, batch_size: int, rng: np.random.Generator | None,
                  what: str = "the training data") -> list[np.ndarray]:
    """Index arrays of the full batches of one epoch (shuffled by `rng` when given); the
    last `samples % batch_size` samples of the order are left out, as the step's shapes
    are fixed (and padding would bias the gradient)."""
    if samples < batch_size:
        raise InputError(f"{what} holds {samples} samples, fewer than the batch "
                         f"size {batch_size}", hint="use a smaller batch size")
    order = rng.permutation(samples) if rng is not None else np.arange(samples)
    full = samples - samples % batch_size
    return [order[start : start + batch_size] for start in range(0, full, batch_size)]


@dataclass(slots=True)
class DivergenceMonitor:
    """Stops training whose loss turned non-finite or grew by DIVERGENCE_FACTOR."""

    lr: float
    first: float | None = None

    @property
    def hint(self) -> str:
        return f"use a smaller learning rate, e.g. {self.lr / 10:g} (--lr)"

    def check(self, step: int, loss: float) -> None:
        hint = self.hint
        if not math.isfinite(loss):
            raise FhecError(f"training diverged at step {step}: the loss is {loss}", hint=hint)
        if self.first is None:
            self.first = loss
        elif loss > DIVERGENCE_FACTOR * max(self.first, LOSS_FLOOR):
            raise FhecError(f"training diverged at step {step}: the loss grew from "
                            f"{self.first:.4g} to {loss:.4g}", hint=hint)


@dataclass(slots=True)
class History:
    """What `fit` did: the loss of each step, and the samples each epoch left out."""

    losses: list[float] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0
    left_out_per_epoch: int = 0


class StepSession(Protocol):
    """Where the trained weights live between steps and how one step runs: in clear
    (`ClearSession`), or encrypted on a server with a client holding the secret key
    (the CKKS and TFHE backends' `build_session(plan)`)."""

    module: Module  # the step function as compiled for the backend
    pipeline: tuple[str, ...]  # the backend passes it went through

    def run(self, features: Arrays, labels: np.ndarray) -> float | None:
        """One step on one batch (features by input name, labels encoded for the loss);
        the loss before the update, decrypted, or None when the plan does not report it."""
        ...

    def weights(self) -> Arrays:
        """The current weights (and velocities) by input name, in clear (the client
        decrypts encrypted ones)."""
        ...

    def report(self) -> dict[str, object]:
        """What the run cost so far: steps, refreshes, traffic, parameters ... (JSON-able)."""
        ...


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What an FHE backend needs to compile and run a training step."""

    module: Module  # the step IR after `differentiate`, in clear: no backend pass yet
    weights: Arrays  # the trained initializers' starting values, by step input name
    velocities: Arrays  # their momentum buffers (empty without momentum)
    # Complete step inputs along a rehearsal of the training in clear on calibration
    # data: the value ranges of every step of a run, not only of the first.
    calibration: list[Arrays]
    batch_size: int
    report_loss: bool  # compute the loss each step and have the client decrypt it
    options: Mapping[str, Mapping[str, object]]  # per-pass options, as fhec.compile's
    # CKKS: steps one circuit takes between two refreshes of the weights (deeper
    # parameters for k > 1); the session runs them when k batches have come.
    steps_per_refresh: int = 1


@dataclass(slots=True)
class ClearSession:
    """The step interpreted in clear (the reference backend): weights held as arrays."""

    module: Module
    pipeline: tuple[str, ...]
    run_step: StepRunner
    state: Arrays  # weights and velocities, by step input name
    steps: int = 0

    def run(self, features: Arrays, labels: np.ndarray) -> float | None:
        inputs = {**features, LABEL: labels, **self.state}
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            outputs = self.run_step(inputs)  # non-finite results are reported by Trainer
        self.state = {name: np.asarray(outputs[name]) for name in self.state}
        self.steps += 1
        return float(outputs[LOSS])

    def weights(self) -> Arrays:
        return {name: array.copy() for name, array in self.state.items()}

    def report(self) -> dict[str, object]:
        return {"steps": self.steps}


@dataclass(slots=True)
class Trainer:
    """A training run: the session holding the weights, the data checks, the loop."""

    session: StepSession
    signature: Signature  # the forward model's inputs (features)
    labels: LabelSpec
    batch_size: int
    parameters: tuple[str, ...]  # the trained initializers' names
    monitor: DivergenceMonitor
    steps_done: int = 0

    @property
    def weights(self) -> Arrays:
        """The trained initializers' current values (decrypted by the client if need be)."""
        state = self.session.weights()
        return {name: state[name] for name in self.parameters}

    def step(self, features: Mapping[str, np.ndarray], labels: object) -> float | None:
        """One SGD step on exactly one batch; returns its loss (before the update), or
        None when the session does not report it."""
        checked, samples = check_inputs(self.signature, features, "training input")
        if samples != self.batch_size:
            raise InputError(f"a step takes a batch of {self.batch_size} samples, got {samples}",
                             hint="use fit() for any number of samples")
        return self._step(checked, encode_labels(self.labels, labels, samples))

    def fit(self, data: Mapping[str, np.ndarray], epochs: int, *, shuffle: bool = True,
            seed: int = 0, progress: bool | None = False, on_step: OnStep | None = None
            ) -> History:
        """`epochs` passes over `data` (the model's inputs plus `label`) in full batches."""
        features, labels = split_labels(data, "the training data")
        checked, samples = check_inputs(self.signature, features, "training input")
        encoded = encode_labels(self.labels, labels, samples)
        rng = np.random.default_rng(seed) if shuffle else None
        plan = [epoch_batches(samples, self.batch_size, rng) for _ in range(epochs)]
        _check_whole_runs(self.session, self.steps_done, sum(len(p) for p in plan))
        history = History(epochs=epochs, left_out_per_epoch=samples % self.batch_size)
        for batch in _progress(plan, progress):
            loss = self._step({k: v[batch] for k, v in checked.items()}, encoded[batch])
            if loss is not None:
                history.losses.append(loss)
            history.steps += 1
            if on_step is not None:
                on_step(self.steps_done, loss)
        return history

    def _step(self, features: Arrays, labels: np.ndarray) -> float | None:
        step = self.steps_done + 1
        loss = self.session.run(features, labels)
        if loss is not None:
            self.monitor.check(step, loss)
        if isinstance(self.session, ClearSession) and not all(
            np.isfinite(w).all() for w in self.session.state.values()
        ):
            raise FhecError(f"training diverged at step {step}: the weights became non-finite",
                            hint=self.monitor.hint)
        self.steps_done = step
        return loss


def _check_whole_runs(session: StepSession, done: int, planned: int) -> None:
    """A session that runs k steps at once (CKKS, k steps per refresh) must end on a
    whole run, or the last steps would never be applied."""
    per_run = getattr(session, "steps_per_run", 1)
    if (done + planned) % per_run:
        raise FhecError(
            f"the step circuit runs {per_run} steps at once, and {done} + {planned} steps "
            "do not end on a whole run",
            hint=f"train a multiple of {per_run} steps (epochs x batches per epoch), or "
            "compile with steps_per_refresh=1",
        )


def _progress(plan: list[list[np.ndarray]], progress: bool | None) -> Iterator[np.ndarray]:
    """The batches in order, behind a tqdm bar on stderr (None: only on a terminal)."""
    batches = [batch for epoch in plan for batch in epoch]
    if progress is False:
        yield from batches
        return
    from tqdm import tqdm

    disable = None if progress is None else False
    with tqdm(batches, desc="training", unit="step", file=sys.stderr, disable=disable,
              leave=False) as bar:
        yield from bar


def export_onnx(proto: onnx.ModelProto, weights: Mapping[str, np.ndarray],
                path: str | os.PathLike[str]) -> Path:
    """Write `proto` with the initializers named in `weights` replaced (their dtypes kept)."""
    import onnx
    from onnx import numpy_helper

    tuned = onnx.ModelProto()
    tuned.CopyFrom(proto)
    replaced = set()
    for index, tensor in enumerate(tuned.graph.initializer):
        if tensor.name in weights:
            dtype = numpy_helper.to_array(tensor).dtype
            array = np.asarray(weights[tensor.name]).astype(dtype)
            tuned.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, tensor.name))
            replaced.add(tensor.name)
    missing = set(weights) - replaced
    if missing:
        raise FhecError(f"the model has no initializer named {sorted(missing)[0]!r} to update")
    path = Path(path)
    try:
        onnx.save(tuned, str(path))
    except OSError as exc:
        raise InputError(f"cannot write '{path}': {exc.strerror or exc}",
                         hint="check that the folder exists and is writable") from None
    return path


def step_samples(trainer: Trainer, data: Mapping[str, np.ndarray], epochs: int = 1
                 ) -> list[Arrays]:
    """Complete step inputs for calibration: `data` (the model's inputs plus `label`) cut
    into consecutive full batches, each with the weights a rehearsal in clear has reached
    by then: `epochs` passes of training on `data` from the trainer's current state (left
    as it was), so that the ranges cover the weights of a whole run, not only the first.
    A rehearsal that diverges is an error here, before anything is encrypted."""
    assert isinstance(trainer.session, ClearSession)
    features, labels = split_labels(data, "the calibration data")
    checked, samples = check_inputs(trainer.signature, features, "calibration input")
    encoded = encode_labels(trainer.labels, labels, samples)
    session = ClearSession(trainer.session.module, (), trainer.session.run_step,
                           dict(trainer.session.state))
    monitor = DivergenceMonitor(trainer.monitor.lr)
    found: list[Arrays] = []
    for _ in range(epochs):
        for batch in epoch_batches(samples, trainer.batch_size, None, "the calibration data"):
            step_features = {k: v[batch] for k, v in checked.items()}
            found.append({**step_features, LABEL: encoded[batch], **session.state})
            loss = session.run(step_features, encoded[batch])
            assert loss is not None
            monitor.check(len(found), loss)
    return found


def step_signature(module: Module) -> Signature:
    """The step function's interface: every input and output at its compiled shape (a
    step takes exactly one batch, so no axis is split by the runtime)."""
    graph = module.graph
    inputs = []
    for value in module.function.inputs:
        op = graph.node(value).op
        assert isinstance(op, InputOp)
        inputs.append(TensorSpec(op.input_name, op.type.shape, op.type.dtype))
    outputs = [TensorSpec(name, graph.node(v).type.shape, graph.node(v).type.dtype)
               for name, v in module.function.outputs]
    return Signature(tuple(inputs), tuple(outputs))
