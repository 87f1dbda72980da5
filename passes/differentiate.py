"""differentiate: turn a model into its training step (loss, reverse-mode gradients, SGD).

Applies to: a module whose trainable parameters are `func.input`s (`promote-parameters`
makes them so) and whose other weights are constants. Requires: types as `infer-shapes`
establishes them.
Establishes: the function is one SGD step,
    (features, `label`, parameters[, velocities]) -> (new parameters[, new velocities], loss)
- the loss (mean over the batch) reads the model output `output` (default: the first):
  `mse` the mean squared error over all elements (PyTorch's MSELoss); `bce` binary
  cross-entropy computed on logits (BCEWithLogitsLoss, numerically stable: the logit is
  the input of a final Sigmoid, or the output itself when the model has none), labels
  in [0, 1] shaped as the output; `cross-entropy` softmax cross-entropy on the logits of
  an (N, classes) output (the input of a final Softmax / LogSoftmax, else the output),
  labels one-hot (the runtime encodes class indices);
- gradients by reverse accumulation over the nodes between the parameters and the loss,
  each from the rule table in `derivatives.py`, each gradient node at the location of
  the forward node it differentiates; the loss's own gradient is written in closed form
  (2 (y - t) / n, (sigmoid(z) - t) / n, (softmax(z) - t) / N), where it is exact;
- the update p' = p - lr g (with `fold_lr`, lr scales the loss's gradient instead, and
  p' = p - g), or with momentum v' = momentum v + g, p' = p - lr v'
  (torch.optim.SGD), lr and momentum baked in as constants; the velocity of parameter
  P is the input and output `P.velocity`. New inputs (`label`, velocities) are secret.
Outputs are named as the inputs they update, then `loss` (left out when `with_loss` is
false). A node between the parameters and the loss with no derivative rule is a
CompileError naming it. Forward values the step does not use are erased.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from fhec.ir.errors import CompileError, FhecError
from fhec.ir.graph import Graph, Module, ValueId
from fhec.ir.location import Location
from fhec.ir.ops import elementwise as ew
from fhec.ir.ops.core import InputOp
from fhec.ir.ops.nn import LogSoftmaxOp, SoftmaxOp
from fhec.ir.ops.shape import ReduceMeanOp, ReduceSumOp
from fhec.ir.types import TensorType
from fhec.passes.base import Pass, PassContext, PassKind, register_pass
from fhec.passes.derivatives import Adjoint, Emitter, NoDerivative, differentiate_node
from fhec.passes.eliminate_dead_code import EliminateDeadCode

LABEL_INPUT = "label"
LOSS_OUTPUT = "loss"
VELOCITY_SUFFIX = ".velocity"


class Loss(StrEnum):
    MSE = "mse"
    BCE = "bce"
    CROSS_ENTROPY = "cross-entropy"


# PyTorch's names for the losses, as the op type of the loss nodes' location.
LOSS_OP_TYPES = {Loss.MSE: "MSELoss", Loss.BCE: "BCEWithLogitsLoss",
                 Loss.CROSS_ENTROPY: "CrossEntropyLoss"}


def velocity_name(parameter: str) -> str:
    return parameter + VELOCITY_SUFFIX


@dataclass(frozen=True, slots=True)
class _LossGraph:
    loss: ValueId
    start: ValueId  # where the backward sweep starts (the output, or the logits before it)
    gradient: ValueId  # d loss / d start


@register_pass
@dataclass(frozen=True, slots=True)
class Differentiate(Pass):
    name = "differentiate"
    kind = PassKind.TRANSFORM
    parameters: str = ""  # comma-separated names of the inputs to train
    loss: Loss = Loss.MSE
    lr: float = 0.01
    momentum: float = 0.0
    output: str = ""  # the model output the loss reads; "" = the first
    with_loss: bool = True
    # Without momentum: scale the loss's gradient by lr, so the update is p - g (one
    # product by a constant fewer on every path: a CKKS level per step).
    fold_lr: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.lr < float("inf"):
            raise FhecError(f"the learning rate must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise FhecError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.fold_lr and self.momentum:
            raise FhecError("differentiate: fold_lr applies only without momentum")

    def run(self, module: Module, context: PassContext) -> None:
        function, graph = module.function, module.graph
        params = self._parameters(module)
        out_name, out = self._output(module)
        label_location = Location(LABEL_INPUT, "Input")
        label = _new_input(module, LABEL_INPUT, graph.node(out).type, label_location)
        emitter = Emitter(graph, Location(LOSS_OUTPUT, LOSS_OP_TYPES[self.loss]))
        built = _build_loss(emitter, self.loss, out, label, out_name,
                            self.lr if self.fold_lr else 1.0)
        grads = _gradients(graph, built.start, built.gradient, params)
        outputs: list[tuple[str, ValueId]] = []
        velocities: list[tuple[str, ValueId]] = []
        for name, param in params.items():
            new_param, new_velocity = self._update(module, name, param, grads[param])
            outputs.append((name, new_param))
            if new_velocity is not None:
                velocities.append((velocity_name(name), new_velocity))
        function.outputs = outputs + velocities
        if self.with_loss:
            function.outputs.append((LOSS_OUTPUT, built.loss))
        EliminateDeadCode().run(module, context)
        start = graph.node(built.start).location.describe()
        context.notes[self.name] = f"{self.loss} loss on the values of {start}"

    def _parameters(self, module: Module) -> dict[str, ValueId]:
        names = list(dict.fromkeys(n.strip() for n in self.parameters.split(",") if n.strip()))
        inputs = {_input_name(module.graph, v): v for v in module.function.inputs}
        if not names:
            raise FhecError("differentiate needs at least one parameter to train")
        for name in names:
            if name not in inputs:
                raise FhecError(f"differentiate: no input named {name!r} to train",
                                hint=f"inputs are: {', '.join(sorted(inputs))}")
            node = module.graph.node(inputs[name])
            if not node.type.dtype.is_float:
                raise CompileError(f"parameter {name!r} is {node.type}, not floats",
                                   node.location, hint="train floating-point weights only")
        return {name: inputs[name] for name in names}

    def _output(self, module: Module) -> tuple[str, ValueId]:
        outputs = module.function.outputs
        chosen = [o for o in outputs if o[0] == self.output] if self.output else outputs[:1]
        if not chosen:
            raise FhecError(f"the model has no output named {self.output!r}",
                            hint=f"outputs are: {', '.join(n for n, _ in outputs)}")
        name, value = chosen[0]
        node = module.graph.node(value)
        if not node.type.dtype.is_float or node.type.rank == 0:
            raise CompileError(
                f"output {name!r} is {node.type}: the loss needs a float tensor with a batch axis",
                node.location, hint="choose a float output (the logits or probabilities)")
        return name, value

    def _update(
        self, module: Module, name: str, param: ValueId, grad: ValueId
    ) -> tuple[ValueId, ValueId | None]:
        graph = module.graph
        e = Emitter(graph, Location(name, "SGD"))
        step, velocity = grad, None
        if self.momentum:
            location = Location(velocity_name(name), "Input")
            previous = _new_input(module, velocity_name(name), graph.node(param).type, location)
            velocity = e.add(e.scale(previous, self.momentum), grad)  # torch.optim.SGD's buffer
            step = velocity
        return e.sub(param, e.scale(step, 1.0 if self.fold_lr else self.lr)), velocity


def _input_name(graph: Graph, value: ValueId) -> str:
    op = graph.node(value).op
    assert isinstance(op, InputOp)
    return op.input_name


def _new_input(module: Module, name: str, like: TensorType, location: Location) -> ValueId:
    taken = {_input_name(module.graph, v) for v in module.function.inputs}
    if name in taken:
        raise CompileError(f"the model already has an input named {name!r}, which training adds",
                           location, hint="rename that input of the model")
    tensor_type = like.with_secret(True)
    return module.graph.add(InputOp(name, tensor_type), (), tensor_type, location)


# -- the loss -------------------------------------------------------------------------


def _build_loss(e: Emitter, loss: Loss, out: ValueId, label: ValueId, name: str,
                seed: float) -> _LossGraph:
    out_type = e.type(out)
    everything = tuple(range(out_type.rank))
    samples = out_type.shape[0]
    if loss is Loss.MSE:
        diff = e.sub(out, label)
        value = e.emit(ReduceMeanOp(everything, keepdims=False), e.mul(diff, diff))
        return _LossGraph(value, out, e.scale(diff, seed * 2.0 / out_type.size))
    if loss is Loss.BCE:
        if out_type.size != samples:
            raise _misfit(e, out, name, "bce needs one logit or probability per sample",
                          "use cross-entropy for several classes, mse for regression")
        logits = _before(e.graph, out, (ew.SigmoidOp,))
        # softplus(z) - t z = -(t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))), stably
        softplus = e.emit(ew.SoftplusOp(), logits)
        value = e.emit(ReduceMeanOp(everything, keepdims=False),
                       e.sub(softplus, e.mul(label, logits)))
        probabilities = e.emit(ew.SigmoidOp(), logits)
        return _LossGraph(value, logits,
                          e.scale(e.sub(probabilities, label), seed / samples))
    if out_type.rank != 2 or out_type.shape[1] < 2:
        raise _misfit(e, out, name, "cross-entropy needs an (N, classes) output, classes >= 2",
                      "use bce for one column of logits")
    logits = _before(e.graph, out, (SoftmaxOp, LogSoftmaxOp))
    log_p = e.emit(LogSoftmaxOp(axis=1), logits)
    value = e.scale(e.emit(ReduceSumOp(everything, keepdims=False), e.mul(label, log_p)),
                    -1.0 / samples)
    probabilities = e.emit(SoftmaxOp(axis=1), logits)
    return _LossGraph(value, logits, e.scale(e.sub(probabilities, label), seed / samples))


def _before(graph: Graph, out: ValueId, kinds: tuple[type, ...]) -> ValueId:
    """The input of a final op of one of `kinds` over the class axis (the logits), else out."""
    node = graph.node(out)
    axis = getattr(node.op, "axis", -1)
    if isinstance(node.op, kinds) and axis % node.type.rank == node.type.rank - 1:
        return graph.operands(out)[0]
    return out


def _misfit(e: Emitter, out: ValueId, name: str, why: str, hint: str) -> CompileError:
    node = e.graph.node(out)
    per_sample = "x".join(str(d) for d in node.type.shape[1:]) or "1"
    return CompileError(f"{why}; output {name!r} has {per_sample} values per sample",
                        node.location, hint=hint)


# -- reverse accumulation -----------------------------------------------------------


def _gradients(
    graph: Graph, start: ValueId, seed: ValueId, params: dict[str, ValueId]
) -> dict[ValueId, ValueId]:
    """d loss / d p for each parameter p, given d loss / d start = seed."""
    order = graph.topological_order()
    on_path = _between(graph, order, set(params.values()), start)
    adjoints: dict[ValueId, list[ValueId]] = {start: [seed]}
    for value in reversed(order):
        if value not in adjoints or value not in on_path or value in params.values():
            continue
        node = graph.node(value)
        operands = graph.operands(value)
        emitter = Emitter(graph, node.location)
        adjoint = Adjoint(emitter, node.op, operands, value, _total(emitter, adjoints[value]),
                          tuple(o in on_path for o in operands))
        try:
            grads = differentiate_node(adjoint)
        except NoDerivative as exc:
            raise CompileError(
                f"cannot differentiate: {exc}; the loss depends on the trained parameters "
                "through this node", node.location,
                hint="train only parameters after it (e.g. --trainable last)") from None
        for operand, grad in zip(operands, grads, strict=True):
            if grad is not None:
                adjoints.setdefault(operand, []).append(grad)
    result = {}
    for name, param in params.items():
        if param not in adjoints:
            raise CompileError(f"parameter {name!r} does not affect the loss",
                               graph.node(param).location,
                               hint="train parameters the chosen output depends on")
        result[param] = _total(Emitter(graph, graph.node(param).location), adjoints[param])
    return result


def _between(graph: Graph, order: Sequence[ValueId], sources: set[ValueId], sink: ValueId
             ) -> set[ValueId]:
    """Values that depend on a source and that `sink` depends on (both ends included)."""
    reached = set(sources)
    for value in order:
        if any(o in reached for o in graph.operands(value)):
            reached.add(value)
    return reached & (graph.ancestors(sink) | {sink})


def _total(e: Emitter, contributions: list[ValueId]) -> ValueId:
    total = contributions[0]
    for other in contributions[1:]:
        total = e.add(total, other)
    return total
