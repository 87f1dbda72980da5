"""Encrypted SGD steps on TFHE: the step IR in fixed point, compiled by concrete, with the
weights encrypted from the first step to the last.

`build_session(plan)` lowers the step onto integers on the plan's calibration
(training_lower.py, training_fixed.py), compiles it as a one-function concrete module
whose new-weight outputs are wired to its weight inputs (`fhe.Wired`: concrete then picks
parameters under which those outputs are valid inputs, so the server feeds step k's
weight ciphertexts to step k+1 untouched; `composable=True`, every output to every input,
cost about 100x the key generation on a 4x4 step), and returns the session the Trainer
drives. The client encrypts the starting weights once, and each step's features and
labels; it decrypts the loss (when reported) and, on `weights()`, the current weights.

The session's `module` is the step IR as the plan gives it (the fixed-point program is
not an IR module) and `pipeline` is empty: no IR pass runs after `differentiate`.

Options, under `options={"tfhe-training": {...}}`:
- `mode`: "execute" (default: key generation, encryption, encrypted run) or "simulate"
  (concrete's simulation of the same circuit on clear integers; the weights stay in the
  simulated runtime between steps as they would on a server).
- `bits` (default 4): the fixed-point width of the inputs, labels, weights and every
  lookup's output.
- `lookup_bits` (default 6, more than `bits`): the widest lookup input; accumulators are
  rounded down to it before a lookup. Concrete's key generation grows steeply past 6-8.
- concrete's options of `TfheConfig` (p_error, global_p_error, security_level, ...).
Supported: trainable Gemm layers (on the features, or after frozen Gemm layers, whose
weights stay clear), elementwise activations, the bce or mse loss, plain SGD. Momentum
and softmax cross-entropy (a lookup of several encrypted values) raise an FhecError
naming what is not supported; so does any other op the step holds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fhec.backends.tfhe.config import TfheConfig
from fhec.backends.tfhe.training_fixed import StepProgram
from fhec.backends.tfhe.training_lower import lower_step
from fhec.ir.errors import FhecError
from fhec.ir.graph import Module
from fhec.runtime.training import LABEL, LOSS, Arrays, StepPlan, StepSession

OPTION_KEY = "tfhe-training"
MODES = ("execute", "simulate")
DEFAULT_BITS = 4
DEFAULT_LOOKUP_BITS = 6
MAX_LOOKUP_BITS = 16  # concrete's widest table lookup
FUNCTION = "step"


@dataclass(frozen=True, slots=True)
class TrainingOptions:
    """The `tfhe-training` option group (see the module docstring), checked."""

    mode: str = "execute"
    bits: int = DEFAULT_BITS
    lookup_bits: int = DEFAULT_LOOKUP_BITS
    config: TfheConfig = field(default_factory=TfheConfig)

    @classmethod
    def parse(cls, options: Mapping[str, Mapping[str, object]]) -> TrainingOptions:
        extra = sorted(set(options) - {OPTION_KEY})
        if extra:
            raise FhecError(f"TFHE training has no option group {extra[0]!r}",
                            hint=f"put its options under {OPTION_KEY!r}")
        group = options.get(OPTION_KEY, {})
        if not isinstance(group, Mapping):
            raise FhecError(f"the {OPTION_KEY!r} options must be a dict, got {group!r}")
        given = dict(group)
        mode = given.pop("mode", "execute")
        if mode not in MODES:
            raise FhecError(f"unknown TFHE training mode {mode!r}",
                            hint=f"use one of: {', '.join(MODES)}")
        bits = _integer(given.pop("bits", DEFAULT_BITS), "bits", 2, MAX_LOOKUP_BITS - 1)
        lookup = _integer(given.pop("lookup_bits", DEFAULT_LOOKUP_BITS), "lookup_bits",
                          bits + 1, MAX_LOOKUP_BITS)
        return cls(str(mode), bits, lookup, TfheConfig.from_options(given))


def _integer(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not (
            low <= value <= high):
        raise FhecError(f"TFHE training option {name}={value!r} must be an integer in "
                        f"{low}..{high}")
    return int(value)


def build_session(plan: StepPlan) -> StepSession:
    """Lower and compile the step of `plan` (see the module docstring); the client's keys
    are generated on the first encrypted step."""
    options = TrainingOptions.parse(plan.options)
    _check_plan(plan)
    weights = list(plan.weights)
    # The loss first: the client decrypts it alone (concrete decrypts outputs by position).
    results = ([LOSS] if plan.report_loss else []) + weights
    lowered = lower_step(plan.module, plan.calibration, weights, results, options.bits,
                         options.lookup_bits)
    circuit = compile_step(lowered, weights, options)
    return TfheStepSession(plan.module, (), lowered, circuit, options,
                           {name: np.asarray(w) for name, w in plan.weights.items()},
                           plan.report_loss)


def _check_plan(plan: StepPlan) -> None:
    if plan.velocities:
        raise FhecError("TFHE training does not support momentum",
                        hint="train with momentum=0 on backend='tfhe'")
    if not plan.calibration:
        raise FhecError("TFHE training needs calibration data: its fixed-point scales come "
                        "from a rehearsal in clear", hint="pass calibration=...")


@dataclass(slots=True)
class CompiledStep:
    """The concrete module of the step and what compiling it cost."""

    module: Any  # concrete.fhe.FheModule
    statistics: dict[str, object]

    @property
    def function(self) -> Any:
        return getattr(self.module, FUNCTION)


def compile_step(lowered: StepProgram, weights: list[str], options: TrainingOptions
                 ) -> CompiledStep:
    """The lowered step as a concrete module, each new-weight output wired to its input."""
    from fhec.backends.tfhe import import_concrete_quietly

    import_concrete_quietly()
    from concrete.fhe.compilation.module_compiler import FunctionDef, ModuleCompiler
    from concrete.fhe.compilation.wiring import Input, Output, Wire, Wired

    names = [f"a{index}" for index in range(len(lowered.inputs))]
    function = lowered.function(names)
    function.__signature__ = _signature(names)  # type: ignore[attr-defined]
    function.__name__ = FUNCTION
    definition = FunctionDef(function, dict.fromkeys(names, "encrypted"))
    wires = {Wire(Output(definition, lowered.outputs.index(name)),
                  Input(definition, lowered.inputs.index(name))) for name in weights}
    simulate = options.mode == "simulate"
    configuration = options.config.concrete().fork(fhe_simulation=simulate,
                                                   fhe_execution=not simulate)
    started = time.perf_counter()
    try:
        module = ModuleCompiler([definition], Wired(wires)).compile(
            {FUNCTION: lowered.inputset()}, configuration)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FhecError(f"concrete cannot compile the training step: {reason}",
                        hint="train with fewer bits (options={'tfhe-training': {'bits': ..., "
                        "'lookup_bits': ...}})") from None
    compiled = CompiledStep(module, {})
    compiled.statistics = _statistics(compiled, time.perf_counter() - started)
    return compiled


def _signature(names: list[str]) -> Any:
    import inspect

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind) for n in names])


def _statistics(compiled: CompiledStep, seconds: float) -> dict[str, object]:
    function = compiled.function
    module = compiled.module
    return {
        "programmable_bootstraps_per_step": int(function.programmable_bootstrap_count),
        "max_bit_width": int(function.graph.maximum_integer_bit_width()),
        "max_lookup_bits": _widest_lookup(function.graph),
        "key_bytes": {"bootstrap": int(module.size_of_bootstrap_keys),
                      "keyswitch": int(module.size_of_keyswitch_keys)},
        "compile_seconds": round(seconds, 3),
    }


def _widest_lookup(graph: Any) -> int:
    """The widest table lookup's input as concrete reads it: after a round_bit_pattern,
    the bits the rounding left."""
    widest = 0
    for node in graph.query_nodes():
        name = node.properties.get("name")
        if not node.converted_to_table_lookup or name == "round_bit_pattern":
            continue
        source = graph.ordered_preds_of(node)[0]
        bits = int(source.output.dtype.bit_width)
        if source.properties.get("name") == "round_bit_pattern":
            bits -= int(source.properties.get("kwargs", {}).get("lsbs_to_remove", 0))
        widest = max(widest, bits)
    return widest


@dataclass(slots=True)
class TfheStepSession:
    """The server's encrypted weights, the client's keys, the step loop's bookkeeping."""

    module: Module
    pipeline: tuple[str, ...]
    lowered: StepProgram
    circuit: CompiledStep
    options: TrainingOptions
    initial: Arrays  # the starting weights, encrypted by the client on the first step
    report_loss: bool
    steps: int = 0
    step_seconds: list[float] = field(default_factory=list)
    keygen_seconds: float | None = None
    _held: list[Any] | None = None  # the last step's outputs (fhe.Value), server side

    @property
    def weight_names(self) -> list[str]:
        return [name for name in self.lowered.outputs if name != LOSS]

    def run(self, features: Arrays, labels: np.ndarray) -> float | None:
        started = time.perf_counter()
        named = {**features, LABEL: labels, **self.initial}
        encrypted = self._encrypt(self.lowered.encode(named), first=self._held is None)
        if self._held is not None:  # the server feeds its weights to the next step
            for name in self.weight_names:
                held = self._held[self.lowered.outputs.index(name)]
                encrypted[self.lowered.inputs.index(name)] = held
        self._held = self._server_run(encrypted)
        self.steps += 1
        loss = None
        if self.report_loss:
            loss = float(self._decrypt(self._held[:1])[0].sum() * self.lowered.output_scales[0])
        self.step_seconds.append(time.perf_counter() - started)
        return loss

    def weights(self) -> Arrays:
        """The client decrypts the server's weights (the starting ones before a step)."""
        if self._held is None:
            return {name: np.array(self.initial[name]) for name in self.weight_names}
        decoded = self.lowered.decode(self._decrypt(self._held))
        return {name: decoded[name].astype(self.initial[name].dtype)
                for name in self.weight_names}

    def report(self) -> dict[str, object]:
        per_step = self.step_seconds[1:] or self.step_seconds
        return {
            "steps": self.steps,
            "scheme": "TFHE (concrete-python)",
            "mode": self.options.mode,
            "bits": self.options.bits,
            "lookup_bits": self.options.lookup_bits,
            **self.circuit.statistics,
            "keygen_seconds": self.keygen_seconds,
            "seconds_per_step": round(float(np.mean(per_step)), 3) if per_step else None,
            "quantizers": {name: q.scale for name, q in self.lowered.quantizers.items()},
            # The calibrated error one step adds to each weight (times the steps: the
            # bound after them, against training in clear; see training_fixed.py).
            "weight_error_bound": {name: self.lowered.error_bound[name]
                                   for name in self.weight_names},
        }

    # -- the client and the server ---------------------------------------------------
    def _runtime(self) -> Any:
        """concrete's (client, server) pair of the mode: execution or simulation."""
        module = self.circuit.module
        if self.options.mode == "simulate":
            return module.simulation_runtime.val
        if self.keygen_seconds is None:
            started = time.perf_counter()
            module.keygen(force=True, seed=secrets.randbits(128),
                          encryption_seed=secrets.randbits(128))
            self.keygen_seconds = round(time.perf_counter() - started, 3)
        return module.execution_runtime.val

    def _encrypt(self, arguments: list[np.ndarray], first: bool) -> list[Any]:
        """The client encrypts this step's data (and, on the first step, the weights)."""
        runtime = self._runtime()
        weights = {self.lowered.inputs.index(n) for n in self.weight_names}
        given = [a if first or i not in weights else None for i, a in enumerate(arguments)]
        if self.options.mode == "simulate":
            values = runtime.client.simulate_encrypt(*given, function_name=FUNCTION)
        else:
            values = runtime.client.encrypt(*given, function_name=FUNCTION)
        return list(values) if isinstance(values, tuple) else [values]

    def _server_run(self, arguments: list[Any]) -> list[Any]:
        runtime = self._runtime()
        if self.options.mode == "simulate":
            results = runtime.server.run(*arguments, function_name=FUNCTION)
        else:
            results = runtime.server.run(*arguments, function_name=FUNCTION,
                                         evaluation_keys=runtime.client.evaluation_keys)
        return list(results) if isinstance(results, tuple) else [results]

    def _decrypt(self, values: list[Any]) -> list[np.ndarray]:
        """The client decrypts the first len(values) outputs of a step."""
        runtime = self._runtime()
        if self.options.mode == "simulate":
            clear = runtime.client.simulate_decrypt(*values, function_name=FUNCTION)
        else:
            clear = runtime.client.decrypt(*values, function_name=FUNCTION)
        items = clear if isinstance(clear, tuple) else (clear,)
        return [np.asarray(item, dtype=np.float64) for item in items]


__all__ = ["MODES", "OPTION_KEY", "TfheStepSession", "TrainingOptions", "build_session"]
