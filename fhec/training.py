"""Fine-tuning: compile the SGD step of an ONNX model and run it.

    import fhec
    trainer = fhec.compile_training("model.onnx", trainable="last", loss="cross-entropy",
                                    lr=0.1, batch_size=32)
    trainer.fit({"input": x, "label": y}, epochs=3)
    trainer.export("tuned.onnx")

The step is compiled once: `promote-parameters` makes the trained initializers inputs,
the common transforms clean the graph, `differentiate` turns it into
(features, label, weights) -> (new weights, loss), and the backend's pipeline
compiles that function like any model. The runtime (`fhec.runtime.training`) feeds
each step's weights to the next.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fhec.ir.errors import FhecError, InputError
from fhec.ir.graph import Module

if TYPE_CHECKING:
    import onnx

    from fhec.api import Model
    from fhec.ir.graph import Graph
    from fhec.ir.signature import Signature
    from fhec.passes.differentiate import Differentiate
    from fhec.runtime.training import History, OnStep, StepPlan, StepRunner, StepSession, Trainer

# Backends `compile_training` knows; the FHE ones build their session (encrypted
# weights, client and server) with `build_session(StepPlan)` from these modules.
TRAINING_BACKENDS: tuple[str, ...] = ("reference", "ckks", "tfhe")
SESSION_MODULES: dict[str, str] = {
    "ckks": "fhec.backends.ckks.training",
    "tfhe": "fhec.backends.tfhe.training",
}
# The values of passes.differentiate.Loss, spelled here so the CLI need not import passes.
LOSSES: tuple[str, ...] = ("mse", "bce", "cross-entropy")
# The transforms of the common pipeline, run between promote-parameters and differentiate.
STEP_PREFIX = ",".join((
    "infer-shapes", "fold-constants", "fold-batchnorm", "canonicalize", "fold-constants",
    "eliminate-dead-code",
))
DEFAULT_BATCH_SIZE = 32


@dataclass(slots=True)
class TrainingModel:
    """A compiled training step and the weights it updates: step, fit, read, export."""

    backend: str
    pipeline: tuple[str, ...]
    parameters: tuple[str, ...]
    loss: str
    lr: float
    momentum: float
    batch_size: int
    trainer: Trainer
    proto: onnx.ModelProto
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> Module:
        """The step function, after the backend's pipeline."""
        return self.trainer.session.module

    def report(self) -> dict[str, object]:
        """What training cost so far (steps; for FHE: refreshes, traffic, parameters)."""
        return self.trainer.session.report()

    def step(self, features: Mapping[str, np.ndarray], labels: object) -> float | None:
        """One SGD step on one batch of exactly `batch_size` samples; returns the loss
        (computed before the update; None for an FHE backend unless compiled with
        `report_loss=True`). Labels: class indices for cross-entropy, targets
        shaped as the output otherwise."""
        return self.trainer.step(features, labels)

    def fit(
        self,
        data: Mapping[str, np.ndarray],
        epochs: int = 1,
        *,
        shuffle: bool = True,
        seed: int = 0,
        progress: bool | None = False,
        on_step: OnStep | None = None,
    ) -> History:
        """`epochs` passes over `data` (the model's inputs plus `label`) in full batches
        (shuffled with `seed`; the samples past the last full batch wait for the next
        epoch's order). `progress`: a bar on stderr (None: only on a terminal);
        `on_step(step, loss)` after every step."""
        if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
            raise FhecError(f"epochs must be a positive integer, got {epochs!r}")
        return self.trainer.fit(data, int(epochs), shuffle=shuffle, seed=seed,
                                progress=progress, on_step=on_step)

    def weights(self) -> dict[str, np.ndarray]:
        """The current value of each trained initializer, by name (decrypted by the
        client for an FHE backend)."""
        return self.trainer.weights

    @property
    def steps_done(self) -> int:
        return self.trainer.steps_done

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the ONNX model with the trained initializers replaced by their values now."""
        from fhec.runtime.training import export_onnx

        return export_onnx(self.proto, self.trainer.weights, path)

    @property
    def signature(self) -> Signature:
        """The step function's inputs (features, label, weights, velocities) and outputs."""
        from fhec.runtime.training import step_signature

        return step_signature(self.module)

    @property
    def ir(self) -> str:
        from fhec.ir.printer import print_module

        return print_module(self.module)


def compile_training(
    model: Model,
    *,
    loss: str,
    lr: float,
    trainable: str | Sequence[str] = "last",
    momentum: float = 0.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: str = "reference",
    calibration: Mapping[str, np.ndarray] | None = None,
    calibration_epochs: int = 1,
    output: str | None = None,
    report_loss: bool = False,
    options: Mapping[str, Mapping[str, object]] | None = None,
    steps_per_refresh: int = 1,
) -> TrainingModel:
    """Compile one SGD step of `model` (a path or onnx.ModelProto) for `backend`.

    `trainable`: "last" (the last Gemm's weights and bias) or initializer names; the
    other weights stay frozen constants. `loss`: "mse", "bce" (on logits: the input of a
    final Sigmoid) or "cross-entropy" (softmax cross-entropy on logits: the input of a
    final Softmax, labels as class indices). `output` names the model output the loss
    reads (default: the first). `calibration` is training data (the model's inputs plus
    `label`) whose batches set the step's value ranges, along `calibration_epochs`
    passes of a rehearsal in clear (required for an FHE backend: the approximations
    and the quantization hold on these ranges). `report_loss`: an FHE backend computes
    the loss and the client decrypts it every step (the reference backend always
    does). `options`: per-pass options, as `fhec.compile`'s. `steps_per_refresh` (CKKS):
    the steps one circuit takes before the client refreshes the weights (parameters deep
    enough for them; training must then come in multiples of it).
    """
    from fhec.api import _check_batch_size, _check_model
    from fhec.frontend import import_onnx, load_onnx
    from fhec.passes import PassContext, parse_pipeline, pipeline_for, run_pipeline
    from fhec.passes.differentiate import Differentiate, Loss
    from fhec.passes.promote_parameters import PromoteParameters, trainable_initializers
    from fhec.runtime.training import ClearSession, StepPlan

    _check_backend(backend)
    per_refresh = _check_steps_per_refresh(steps_per_refresh, backend)
    loss_kind, rate = Loss(_check_loss(loss)), _check_rate(lr)
    momentum = _check_momentum(momentum)
    batch = _check_batch_size(batch_size)
    proto = load_onnx(_check_model(model))
    imported = import_onnx(proto, batch_size=batch)
    _check_batch_axes(imported.signature, batch)
    graph = imported.module.graph
    candidates = trainable_initializers(graph)
    names = PromoteParameters(_trainable_option(trainable)).resolve(graph, candidates)
    initial = {name: _constant(graph, candidates[name]) for name in names}
    joined = ",".join(names)
    # On FHE backends the learning rate scales the loss's gradient (a product fewer).
    fold = backend != "reference" and not momentum
    differentiate = Differentiate(joined, loss_kind, rate, momentum, output or "", fold_lr=fold)
    front = [PromoteParameters(joined), *parse_pipeline(STEP_PREFIX), differentiate]
    context = PassContext()
    step_module = run_pipeline(imported.module, front, context)
    trainer = _trainer(step_module, imported.signature, initial, differentiate, batch, names)
    samples = _calibrate(trainer, backend, calibration, calibration_epochs)
    if backend == "reference":
        backend_names = pipeline_for(backend)
        context.calibration = samples or ()
        compiled = run_pipeline(step_module, parse_pipeline(",".join(backend_names)), context)
        trainer.session = ClearSession(compiled, backend_names, _interpreted(compiled),
                                       dict(trainer.session.weights()))
    else:
        plan = StepPlan(step_module, dict(initial), _velocities(initial, differentiate),
                        samples or [], batch, bool(report_loss), dict(options or {}),
                        per_refresh)
        trainer.session = _build_session(backend, plan)
    pipeline = tuple(p.spelled() for p in front) + trainer.session.pipeline
    return TrainingModel(backend, pipeline, tuple(names), str(loss_kind), rate,
                         momentum, batch, trainer, proto, dict(context.notes))


def _calibrate(trainer: Trainer, backend: str, calibration: Mapping[str, np.ndarray] | None,
               epochs: object) -> list[dict[str, np.ndarray]] | None:
    """The step inputs along a rehearsal in clear; an FHE backend cannot do without."""
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
        raise FhecError(f"calibration_epochs must be a positive integer, got {epochs!r}")
    if calibration is None:
        if backend != "reference":
            raise FhecError(f"training on {backend} needs calibration data: the ranges of "
                            "the step's values set its approximations and parameters",
                            hint="pass calibration= (training-like data with 'label'), "
                            "or --calibration DATA.npz")
        return None
    from fhec.runtime.training import step_samples

    return step_samples(trainer, calibration, int(epochs))


def _build_session(backend: str, plan: StepPlan) -> StepSession:
    import importlib

    module = importlib.import_module(SESSION_MODULES[backend])
    session: StepSession = module.build_session(plan)
    return session


def _velocities(initial: Mapping[str, np.ndarray], step: Differentiate) -> dict[str, np.ndarray]:
    from fhec.passes.differentiate import velocity_name

    if not step.momentum:
        return {}
    return {velocity_name(n): np.zeros_like(w) for n, w in initial.items()}


def _trainer(module: Module, signature: Signature, initial: dict[str, np.ndarray],
             step: Differentiate, batch: int, names: Sequence[str]) -> Trainer:
    """The runtime state, running the uncompiled step in clear until the backend's
    session is built (the calibration rehearsal runs on it)."""
    from fhec.passes.differentiate import LABEL_INPUT
    from fhec.runtime.training import ClearSession, DivergenceMonitor, LabelSpec, Trainer

    label = module.graph.node(module.function.input_named(LABEL_INPUT)).type
    spec = LabelSpec(str(step.loss), label.shape, label.dtype.numpy)
    state = {**initial, **_velocities(initial, step)}
    session = ClearSession(module, (), _interpreted(module), state)
    return Trainer(session, signature, spec, batch, tuple(names), DivergenceMonitor(step.lr))


def _interpreted(module: Module) -> StepRunner:
    from fhec.ir.interpreter import evaluate

    return lambda inputs: evaluate(module, inputs)


def _constant(graph: Graph, value: int) -> np.ndarray:
    from fhec.ir.ops.core import ConstantOp

    op = graph.node(value).op
    assert isinstance(op, ConstantOp)
    return np.array(op.value.array)


# -- argument checks -----------------------------------------------------------------


def _check_backend(backend: object) -> None:
    if backend not in TRAINING_BACKENDS:
        raise FhecError(f"unknown training backend {backend!r}",
                        hint=f"choose one of: {', '.join(TRAINING_BACKENDS)}")


def _check_steps_per_refresh(steps: object, backend: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 1 <= steps <= 64:
        raise FhecError(f"steps_per_refresh must be an integer in 1..64, got {steps!r}")
    if steps != 1 and backend != "ckks":
        raise FhecError(f"steps_per_refresh applies to the ckks backend, not {backend}",
                        hint="leave it at 1")
    return int(steps)


def _check_loss(loss: object) -> str:
    if loss not in LOSSES:
        raise FhecError(f"unknown loss {loss!r}", hint=f"choose one of: {', '.join(LOSSES)}")
    return str(loss)


def _check_rate(lr: object) -> float:
    if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating):
        raise FhecError(f"the learning rate must be a number, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise FhecError(f"the learning rate must be positive and finite, got {lr}")
    return float(lr)


def _check_momentum(momentum: object) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, int | float | np.floating):
        raise FhecError(f"momentum must be a number, got {momentum!r}")
    if not 0.0 <= momentum < 1.0:
        raise FhecError(f"momentum must be in [0, 1), got {momentum}")
    return float(momentum)


def _trainable_option(trainable: object) -> str:
    """`trainable` as promote-parameters' comma-separated `names` option."""
    names = [trainable] if isinstance(trainable, str) else trainable
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) for n in names):
        raise FhecError(f"trainable must be 'last' or a list of initializer names, "
                        f"got {trainable!r}")
    odd = [n for n in names if "," in n or not n.strip()]
    if odd:
        raise FhecError(f"cannot train an initializer named {odd[0]!r}",
                        hint="rename initializers with commas or empty names before export")
    return ",".join(names)


def _check_batch_axes(signature: Signature, batch: int) -> None:
    for spec in signature.inputs:
        if spec.batch_axis is None and (not spec.shape or spec.shape[0] != batch):
            raise InputError(
                f"input {spec.name!r} has the fixed shape {spec.shape}, so batches of "
                f"{batch} samples cannot be fed to it",
                hint="export the model with a symbolic batch axis (dynamic_axes), or use "
                f"a batch size of {spec.shape[0] if spec.shape else 1}")
