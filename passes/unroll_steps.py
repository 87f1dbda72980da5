"""unroll-steps: k training steps as one function, the weights carried from each to the next.

Applies to: a training step (`differentiate`). Requires: the inputs named in `carried`
(the trained weights and velocities) are outputs of the same names.
Establishes: the function takes the batch inputs of every step, renamed NAME@i (i = 1 ..
`steps`), and the carried inputs once; step i reads the carried values step i - 1
computed; the outputs are the carried values after the last step, then every other
output of each step as NAME@i (the losses). On CKKS, a circuit that takes k steps
between two refreshes of the weights (parameters deep enough for all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhec.ir.errors import FhecError
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.ops.core import InputOp
from fhec.passes.base import Pass, PassContext, PassKind, Sample, register_pass

SEPARATOR = "@"


def step_name(name: str, step: int) -> str:
    """The name of batch input (or per-step output) `name` in step `step` (1-based)."""
    return f"{name}{SEPARATOR}{step}"


@register_pass
@dataclass(frozen=True, slots=True)
class UnrollSteps(Pass):
    name = "unroll-steps"
    kind = PassKind.TRANSFORM
    steps: int = 1
    carried: str = ""  # comma-separated input names carried from step to step

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 64:
            raise FhecError(f"unroll-steps: steps must be in 1..64, got {self.steps}")

    def run(self, module: Module, context: PassContext) -> None:
        carried = [n.strip() for n in self.carried.split(",") if n.strip()]
        outputs = dict(module.function.outputs)
        missing = [n for n in carried if n not in outputs]
        if missing:
            raise FhecError(f"unroll-steps: {missing[0]!r} is not an output the step updates")
        if self.steps == 1:
            return
        module.function = unrolled(module.function, self.steps, carried)


def unrolled(function: Function, steps: int, carried: Sequence[str]) -> Function:
    graph, new = function.graph, Graph()
    order = graph.topological_order()
    current: dict[str, ValueId] = {}  # carried name -> its value in `new` now
    per_step: list[tuple[str, ValueId]] = []
    for step in range(1, steps + 1):
        mapping: dict[ValueId, ValueId] = {}
        for value in order:
            node = graph.node(value)
            if isinstance(node.op, InputOp) and node.op.input_name in carried and step > 1:
                mapping[value] = current[node.op.input_name]
                continue
            op = node.op
            if isinstance(op, InputOp) and op.input_name not in carried:
                op = InputOp(step_name(op.input_name, step), op.type)
            operands = [mapping[o] for o in graph.operands(value)]
            mapping[value] = new.add(op, operands, node.type, node.location, node.annotations)
        for name, value in function.outputs:
            if name in carried:
                current[name] = mapping[value]
            else:
                per_step.append((step_name(name, step), mapping[value]))
    outputs = [(name, current[name]) for name, _ in function.outputs if name in carried]
    return Function(function.name, new, outputs + per_step)


def unrolled_samples(samples: Sequence[Sample], steps: int, carried: Sequence[str]
                     ) -> list[Sample]:
    """Inputs of the unrolled function from consecutive step inputs (a rehearsal's):
    each run of `steps` of them, the carried values from the first."""
    found: list[Sample] = []
    for start in range(0, len(samples) - steps + 1, steps):
        window = samples[start : start + steps]
        sample = {n: window[0][n] for n in carried}
        for step, inputs in enumerate(window, start=1):
            sample.update({step_name(n, step): v for n, v in inputs.items() if n not in carried})
        found.append(sample)
    return found
