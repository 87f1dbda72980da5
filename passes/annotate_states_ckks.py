"""annotate-states-ckks: the #ckks{scale_bits, level, size} of every scheme value.

Applies to: modules lowered by `pack-slots-ckks`. Requires: secret `func.input`s carry
#ckks (`pack-slots-ckks` sets them). Establishes: every secret value and every
`ckks.encode` carries #ckks, from each op's `state` rule in topological order (layout
ops pass their operands' state through). Annotations only.

The scale and level passes call `annotate_states` to refresh the annotations after
they rewrite. Before `insert-rescale-ckks` and `insert-mod-switch-ckks` have run,
operands of one op may still differ in scale or level; `strict=False` then aligns
them to the largest (what those passes will establish), `strict=True` (the
validation passes) reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fhec.ir.errors import InternalCompilerError
from fhec.ir.graph import Function, Graph, Module, ValueId
from fhec.ir.interval import Interval
from fhec.ir.op import Op
from fhec.ir.ops.ckks import LAYOUT_OPS, CkksOp, CkksState, EncodeOp, MatMulPlainOp
from fhec.ir.ops.core import InputOp
from fhec.passes.base import Pass, PassContext, PassKind, register_pass


@register_pass
@dataclass(frozen=True, slots=True)
class AnnotateStatesCkks(Pass):
    name = "annotate-states-ckks"
    kind = PassKind.ANNOTATE

    def run(self, module: Module, context: PassContext) -> None:
        annotate_states(module, self.name)


def annotate_states(
    module: Module, pass_name: str, *, strict: bool = False
) -> dict[ValueId, CkksState]:
    states = ckks_states(module.graph, pass_name, strict=strict)
    for value, state in states.items():
        node = module.graph.node(value)
        if node.annotation(CkksState) != state:
            module.graph.set_node(value, node.with_annotation(state))
    return states


def ckks_states(graph: Graph, pass_name: str, *, strict: bool = False) -> dict[ValueId, CkksState]:
    """The state of every scheme value (secret values and encoded plaintexts)."""
    states: dict[ValueId, CkksState] = {}
    for value in graph.topological_order():
        node_state(graph, value, states, pass_name, strict=strict)
    return states


def node_state(
    graph: Graph,
    value: ValueId,
    states: dict[ValueId, CkksState],
    pass_name: str,
    *,
    strict: bool = False,
) -> CkksState | None:
    """The state of `value` from its operands' (in `states`), recorded there; None for a
    public value. Passes that rewrite as they walk use it to keep `states` current."""
    node = graph.node(value)
    where = f"%{value} {node.op.name} at {node.location.describe()}"
    if isinstance(node.op, InputOp):
        if not node.type.secret:
            return None
        state = node.annotation(CkksState)
        if state is None:
            raise InternalCompilerError(f"{where}: a secret input has no #ckks", pass_name)
    elif isinstance(node.op, EncodeOp):
        state = node.op.state([])
    elif not node.type.secret:
        return None
    else:
        operands = [states[o] for o in graph.operands(value) if o in states]
        if not strict:
            operands = _aligned(node.op, operands)
        try:
            state = _state(node.op, operands)
        except ValueError as exc:
            raise InternalCompilerError(f"{where}: {exc}", pass_name) from None
        except NotImplementedError:
            raise InternalCompilerError(
                f"{where}: not a CKKS op (not lowered)", pass_name
            ) from None
    states[value] = state
    return state


def _state(op: object, operands: list[CkksState]) -> CkksState:
    if isinstance(op, CkksOp):
        return op.state(operands)
    if getattr(op, "name", "") in LAYOUT_OPS:
        if len(set(operands)) != 1:
            raise ValueError(f"operands in different states: {sorted(set(operands), key=str)}")
        return operands[0]
    raise NotImplementedError


def _aligned(op: object, operands: list[CkksState]) -> list[CkksState]:
    """Operands as the scale and level passes will leave them: at one level (the
    deepest), and at one scale where the op adds them."""
    if len(operands) < 2:
        return operands
    level = max(s.level for s in operands)
    multiplicative = getattr(op, "multiplicative", False) or isinstance(op, MatMulPlainOp)
    scale = None if multiplicative else max(s.scale_bits for s in operands)
    return [
        replace(s, level=level, scale_bits=scale if scale is not None else s.scale_bits)
        for s in operands
    ]


# -- rewriting helpers shared by the CKKS scale and level passes ---------------------


def redirect_uses(
    function: Function, old: ValueId, new: ValueId, uses: list[tuple[ValueId, int]]
) -> None:
    """Make the given (user, operand index) uses of `old` use `new`."""
    graph = function.graph
    for user, index in uses:
        operands = list(graph.operands(user))
        operands[index] = new
        graph.set_operands(user, operands)


def insert_after(function: Function, value: ValueId, op: Op) -> ValueId:
    """`op(value)` taking over every use of `value` (outputs included)."""
    graph = function.graph
    uses = graph.users(value)
    node = graph.node(value)
    kept = tuple(a for a in node.annotations if isinstance(a, Interval))
    new = graph.add(op, [value], op.infer([node.type]), node.location, kept)
    redirect_uses(function, value, new, uses)
    function.outputs = [(name, new if v == value else v) for name, v in function.outputs]
    return new


def insert_before(
    function: Function, user: ValueId, index: int, op: Op, cache: dict[tuple[ValueId, Op], ValueId]
) -> ValueId:
    """`op(operand)` on the edge into `user`'s operand `index`, shared by every edge that
    needs the same `op` of the same operand (through `cache`)."""
    graph = function.graph
    operand = graph.operands(user)[index]
    key = (operand, op)
    if key not in cache:
        node = graph.node(operand)
        kept = tuple(a for a in node.annotations if isinstance(a, Interval))
        cache[key] = graph.add(op, [operand], op.infer([node.type]), node.location, kept)
    redirect_uses(function, operand, cache[key], [(user, index)])
    return cache[key]
