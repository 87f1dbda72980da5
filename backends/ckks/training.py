"""Training on CKKS: the SGD step compiled for SEAL, run on encrypted data and weights.

The data owner (the client) holds the secret key; the model owner (the server) holds
the evaluation keys, the encrypted weights and the compiled step. One step:

1. the client encrypts a batch (features and labels: one sample per slot) and sends it;
2. the server runs the step on it and on the encrypted weights (replicated: each weight
   fills every slot), which gives the new weights at a deeper level;
3. refresh: the new weights have used up levels, so the server sends them to the
   client, who decrypts them and sends them back encrypted afresh -- a counted protocol
   step whose traffic the report gives (the client learns the weights, which are its
   to learn: only it may read the tuned model). With `report_loss` the client also
   decrypts the batch's loss.

The two parties are runtime/ckks_training_client.py and runtime/ckks_training_server.py;
everything between them goes through the checked byte envelopes of
backends/ckks/serialization.py, so the traffic counted is the real one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fhec.backends.ckks.error_model import error_bounds
from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.passes.annotate_states_ckks import ckks_states
from fhec.passes.select_rotation_keys_ckks import module_rotations
from fhec.passes.unroll_steps import step_name
from fhec.runtime.ckks_training_client import TrainingClient
from fhec.runtime.ckks_training_server import TrainingServer

if TYPE_CHECKING:
    from fhec.runtime.training import StepPlan

Arrays = dict[str, np.ndarray]
LOSS = "loss"


@dataclass(slots=True)
class Traffic:
    """Bytes between the parties, by kind."""

    keys: int = 0  # evaluation keys, once
    batches: int = 0  # encrypted batches, client -> server
    refresh: int = 0  # weights, server -> client -> server
    loss: int = 0  # encrypted losses, server -> client

    def as_dict(self) -> dict[str, int]:
        return {"keys": self.keys, "batches": self.batches, "refresh": self.refresh,
                "loss": self.loss}


@dataclass(slots=True)
class CkksTrainingSession:
    """The StepSession of fhec.runtime.training, on CKKS: a client and a server in one
    process, talking bytes."""

    module: Module
    pipeline: tuple[str, ...]
    client: TrainingClient
    server: TrainingServer
    traffic: Traffic
    steps: int = 0
    refreshes: int = 0
    steps_per_run: int = 1  # steps between refreshes: batches wait until they are all here
    seconds: dict[str, float] = field(default_factory=lambda: {
        "encrypt": 0.0, "step": 0.0, "refresh": 0.0, "decrypt": 0.0})
    pending: list[Arrays] = field(default_factory=list)

    def run(self, features: Arrays, labels: np.ndarray) -> float | None:
        """One step; with k steps per refresh, the k-th of a run computes all k (the
        others return None) and returns the last one's loss."""
        self.pending.append({**features, LOSS_LABEL: labels})
        if len(self.pending) < self.steps_per_run:
            return None
        if self.steps_per_run == 1:
            arrays = self.pending[0]
        else:
            arrays = {step_name(name, step): array
                      for step, batch in enumerate(self.pending, start=1)
                      for name, array in batch.items()}
        self.pending = []
        return self._run(arrays)

    def _run(self, arrays: Arrays) -> float | None:
        start = time.perf_counter()
        batch = self.client.encrypt_batch(arrays)
        self.traffic.batches += len(batch)
        middle = time.perf_counter()
        weights, loss = self.server.step(batch)
        done = time.perf_counter()
        self.seconds["encrypt"] += middle - start
        self.seconds["step"] += done - middle
        fresh = self.client.refresh(weights, self.steps + 1)
        self.server.receive_weights(fresh)
        self.traffic.refresh += len(weights) + len(fresh)
        self.refreshes += 1
        self.seconds["refresh"] += time.perf_counter() - done
        self.steps += self.steps_per_run
        if loss is None:
            return None
        self.traffic.loss += len(loss)
        losses = self.client.decrypt(loss)
        last = LOSS if self.steps_per_run == 1 else step_name(LOSS, self.steps_per_run)
        return float(np.asarray(losses[last]).reshape(-1)[0])

    def load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Continue from `weights` (every trained input, in clear): the client encrypts
        them and the server takes them in place of its own."""
        fresh = self.client.encrypt_weights(weights)
        self.server.receive_weights(fresh)
        self.traffic.refresh += len(fresh)

    def weights(self) -> Arrays:
        if self.pending:
            raise FhecError(
                f"{len(self.pending)} step(s) wait for the rest of a run of "
                f"{self.steps_per_run} steps: the weights are not up to date",
                hint=f"train a multiple of {self.steps_per_run} steps before reading them")
        start = time.perf_counter()
        arrays = self.client.decrypt(self.server.current_weights())
        self.seconds["decrypt"] += time.perf_counter() - start
        return {name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()}

    def report(self) -> dict[str, object]:
        params = self.client.context.params
        states = ckks_states(self.module.graph, "ckks")
        levels = max((s.level for s in states.values()), default=0)
        return {
            "scheme": "CKKS (SEAL)",
            "steps": self.steps,
            "refreshes": self.refreshes,
            "steps_per_refresh": self.steps_per_run,
            "levels_per_refresh": levels,
            "levels_per_step": levels / self.steps_per_run,
            "poly_degree": params.poly_degree,
            "coeff_modulus_bits": list(params.coeff_bits),
            "security_bits": params.security,
            "galois_keys": len(module_rotations(self.module)),
            "traffic_bytes": self.traffic.as_dict(),
            "refresh_bytes_per_refresh": self.traffic.refresh // max(self.refreshes, 1),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "evaluation_seconds": round(self.server.evaluation_seconds, 3),
        }

    def weight_bounds(self, steps: int) -> list[dict[str, float]]:
        """The predicted max |error| of every weight after 1..`steps` steps, against the
        same steps in exact arithmetic (each step's bound feeds the next one's inputs)."""
        found: list[dict[str, float]] = []
        carried: dict[str, float] = {}
        for _ in range(steps):
            bounds = error_bounds(self.module, self.client.context, carried)
            carried = {name: bound for name, bound in bounds.items()
                       if name in self.server.weight_names}
            found.append(dict(carried))
        return found


LOSS_LABEL = "label"


def training_pipeline() -> tuple[str, ...]:
    """The CKKS pipeline for a training step: the inference one after its client
    epilogue split (a step has no epilogue), with the trained weights replicated first.
    Its Galois keys come from select-rotation-keys-ckks as for inference."""
    from fhec.passes import pipeline_for

    inference = pipeline_for("ckks")
    tail = inference[inference.index("split-epilogue-ckks") + 1 :]
    return ("annotate-secrecy", "annotate-ranges", "replicate-parameters-ckks", *tail)


def build_session(plan: StepPlan) -> CkksTrainingSession:
    """Compile `plan`'s step for CKKS, make the client's keys, hand the server the
    evaluation keys and the encrypted starting weights."""
    from fhec.api import with_options
    from fhec.passes import PassContext, parse_pipeline, run_pipeline
    from fhec.passes.replicate_parameters_ckks import ReplicateParametersCkks

    if not plan.calibration:
        raise FhecError("CKKS training needs calibration data to bound the step's values",
                        hint="pass calibration= (training-like data with 'label')")
    _check_loss(plan.module)
    module = plan.module.copy()
    if not plan.report_loss:
        _drop_loss(module)
    held = [*plan.weights, *plan.velocities]
    calibration = list(plan.calibration)
    if plan.steps_per_refresh > 1:
        module, calibration = _unrolled(module, calibration, plan.steps_per_refresh, held)
    passes = [
        ReplicateParametersCkks(",".join(held)) if p.name == ReplicateParametersCkks.name else p
        for p in parse_pipeline(",".join(with_options(training_pipeline(), plan.options)))
    ]
    context = PassContext()
    context.calibration = calibration
    compiled = run_pipeline(module, passes, context)
    client = TrainingClient(compiled)
    traffic = Traffic()
    keys = client.evaluation_keys()
    weights = client.encrypt_weights({**plan.weights, **plan.velocities})
    traffic.keys, traffic.refresh = len(keys), len(weights)
    server = TrainingServer(compiled, keys, weights)
    pipeline = tuple(p.spelled() for p in passes)
    return CkksTrainingSession(compiled, pipeline, client, server, traffic,
                               steps_per_run=plan.steps_per_refresh)


def _unrolled(module: Module, calibration: list[Arrays], steps: int, held: list[str]
              ) -> tuple[Module, list[Arrays]]:
    """`steps` steps as one function, and its calibration from consecutive rehearsal
    steps."""
    from fhec.passes import PassContext
    from fhec.passes.unroll_steps import UnrollSteps, unrolled_samples

    samples = [dict(s) for s in unrolled_samples(calibration, steps, held)]
    if not samples:
        raise FhecError(f"the calibration rehearsal ran {len(calibration)} steps, fewer than "
                        f"the {steps} steps per refresh",
                        hint="give more calibration data or calibration_epochs")
    unrolled = module.copy()
    UnrollSteps(steps, ",".join(held)).run(unrolled, PassContext())
    return unrolled, samples


def _check_loss(module: Module) -> None:
    """Softmax cross-entropy needs exp and a reciprocal of encrypted logits over their
    whole calibrated range: polynomials there err by more than the values (exp's error
    grows with e**range): refused rather than trained on noise."""
    graph = module.graph
    if any(graph.node(v).location.op_type == "CrossEntropyLoss" for v in graph):
        raise FhecError(
            "softmax cross-entropy cannot be trained on CKKS: the softmax of encrypted "
            "logits needs polynomial exp and reciprocal over the logits' whole range, "
            "too inexact to train on",
            hint="use loss 'mse' on one-hot labels (or 'bce' for one logit), or train on "
            "the tfhe or reference backend",
        )


def _drop_loss(module: Module) -> None:
    from fhec.passes import PassContext
    from fhec.passes.eliminate_dead_code import EliminateDeadCode

    module.function.outputs = [(n, v) for n, v in module.function.outputs if n != LOSS]
    EliminateDeadCode().run(module, PassContext())
