"""Linear layers of the CKKS single-sample layout as matrices: the Toeplitz form, derived.

Used by pack-slots-ckks{layout=single} (passes/pack_single_ckks.py) before it lowers.
An op on ONE secret operand whose other operands are constants, and which is affine in
the secret one (Conv, AveragePool, Pad, Transpose, ReduceSum / ReduceMean, Gather, Concat
with constants, MatMul of any rank, a constant broadcast product, ...), is an affine map
of the flattened sample: y = x @ A + s. Nothing is written per op: A is the op's own
`evaluate` on the K unit vectors (stacked on the batch axis: one call; one call per
vector where the op mixes that axis, as a transpose moving it may), s the op at zero,
and a random sample checks the result (an op that is not affine has no form here). For
a convolution A is its Toeplitz matrix, for an average pool its window averages.

`to_gemm` rewrites such an op as reshape (1, K) -> linalg.gemm(x, A, s) -> reshape:
reshapes move nothing in this layout (flattened order), and the gemm becomes one
`ckks.matvec_diagonal` (+ `ckks.add_plain` for s). `fold_gemm_chains` then composes
gemms with nothing between them but reshapes (avg_pool -> flatten -> gemm): x @ A1 @ A2
+ (s1 @ A2 + s2), one level and one set of rotations less per fold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fhec.ir.annotation import Annotation
from fhec.ir.graph import Function, Graph, Node, ValueId
from fhec.ir.interval import Interval
from fhec.ir.ops.core import ConstantOp
from fhec.ir.ops.linalg import GemmOp, MatMulOp
from fhec.ir.ops.shape import ReshapeOp
from fhec.passes.rewrite import add_constant, erase_if_dead

NOT_LINEAR = "is not linear in its encrypted operand"
PROBE_SEED = 2026  # the random check's sample: fixed, so compiling is deterministic


@dataclass(frozen=True)
class AffineMap:
    """y = x @ matrix + shift on the flattened sample (K numbers in, M out)."""

    matrix: np.ndarray  # (K, M), float64
    shift: np.ndarray  # (M,), float64

    def then(self, other: AffineMap) -> AffineMap:
        """This map followed by `other`."""
        return AffineMap(self.matrix @ other.matrix, self.shift @ other.matrix + other.shift)


def secret_operand(graph: Graph, value: ValueId) -> tuple[int, str | None]:
    """The index of the node's one secret operand, and why it has no affine form (None
    when it may: exactly one secret operand, every other a constant)."""
    operands = graph.operands(value)
    secret = [i for i, o in enumerate(operands) if graph.node(o).type.secret]
    name = graph.node(value).op.name
    if len(secret) != 1:
        return -1, (f"{name} reads {len(secret)} encrypted operands; the single-sample "
                    "layout computes linear maps of one encrypted value")
    public = [o for i, o in enumerate(operands) if i != secret[0]]
    if any(not isinstance(graph.node(o).op, ConstantOp) for o in public):
        return secret[0], (f"{name} on an encrypted value needs its other operands to be "
                           "constants (its matrix is computed at compile time)")
    return secret[0], None


def affine_map(graph: Graph, value: ValueId) -> AffineMap | str:
    """The node as y = x @ A + s on its flattened secret operand, or why it is not one."""
    index, reason = secret_operand(graph, value)
    if reason is not None:
        return reason
    node = graph.node(value)
    operands = graph.operands(value)
    x_shape = graph.node(operands[index]).type.shape
    inner = int(np.prod(x_shape[1:], dtype=np.int64))
    outer = int(np.prod(node.type.shape[1:], dtype=np.int64))
    params = [_constant(graph, o) for o in operands]

    def run(rows: np.ndarray) -> np.ndarray:  # (n, K) -> (n, M): the op on n samples
        args = list(params)
        args[index] = rows.reshape((len(rows), *x_shape[1:]))
        out = np.asarray(node.op.evaluate(args), dtype=np.float64)
        if out.shape != (len(rows), *node.type.shape[1:]):
            raise ValueError(f"shape {out.shape}")
        return out.reshape(len(rows), outer)

    def one_by_one(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([run(row[None, :]) for row in rows])

    probe = np.random.default_rng(PROBE_SEED).uniform(-1.0, 1.0, size=(1, inner))
    for evaluate in (run, one_by_one):  # one call first; per vector if it mixes samples
        found = _probe(evaluate, run, inner, probe)
        if found is not None:
            return found
    return (f"{node.op.name} {NOT_LINEAR} (its output on a "
            "random sample differs from the matrix its unit vectors give), so it has no "
            "form in the CKKS single-sample layout")


def _probe(
    evaluate: Callable[[np.ndarray], np.ndarray],
    run: Callable[[np.ndarray], np.ndarray],
    inner: int,
    probe: np.ndarray,
) -> AffineMap | None:
    """The map from `evaluate` on the unit vectors and on zero, if a random sample
    (through the op on one sample, `run`) agrees with it; None otherwise."""
    try:
        with np.errstate(all="ignore"):  # a division by a unit vector's zeros: inf, refused
            shift = run(np.zeros((1, inner)))[0]
            matrix = evaluate(np.eye(inner)) - shift
            expected = run(probe)[0]
    except (ValueError, IndexError):  # the op refused a batch of K: not per sample
        return None
    found = AffineMap(matrix, shift)
    got = probe[0] @ matrix + shift
    scale = 1.0 + float(np.max(np.abs(expected), initial=0.0))
    # float32 ops round (K terms at most); a non-linear op misses by the values' size
    if not np.all(np.isfinite(got)) or np.max(np.abs(got - expected), initial=0.0) > 1e-5 * scale:
        return None
    return found


def _constant(graph: Graph, value: ValueId) -> np.ndarray:
    op = graph.node(value).op
    if isinstance(op, ConstantOp):
        array = op.value.array
        return array.astype(np.float64) if array.dtype.kind == "f" else array
    return np.zeros(0)  # the secret operand's place: filled by the probe


def to_gemm(function: Function, value: ValueId, found: AffineMap) -> ValueId:
    """Replace the node by reshape (1, K) -> linalg.gemm(x, A[, s]) -> reshape; by the
    reshape alone where A is the identity and s zero (it moves nothing: a transpose of
    unit axes, a pad of nothing)."""
    graph = function.graph
    node = graph.node(value)
    x = next(o for o in graph.operands(value) if graph.node(o).type.secret)
    size = found.matrix.shape[0]
    if found.matrix.shape == (size, size) and np.array_equal(found.matrix, np.eye(size)) \
            and not np.any(found.shift):
        result = _reshape(graph, node, x, node.type.shape, node.annotation(Interval))
    else:  # the node's annotations (range, calibrated magnitudes) describe the gemm too
        result = emit_gemm(graph, node, x, found, node.annotations)
    function.replace_uses(value, result)
    graph.remove(value)
    return result


def emit_gemm(
    graph: Graph, node: Node, x: ValueId, found: AffineMap, annotations: tuple[Annotation, ...]
) -> ValueId:
    """y = x @ A + s for `node` (its location and type), x of any shape (1, ...); the
    gemm carries `annotations`."""
    bounds = node.annotation(Interval)
    flat = _reshape(graph, node, x, (1, found.matrix.shape[0]), graph.node(x).annotation(Interval))
    dtype = node.type.dtype.numpy
    operands = [flat, add_constant(graph, found.matrix.astype(dtype), node.location)]
    if np.any(found.shift):
        operands.append(add_constant(graph, found.shift.astype(dtype), node.location))
    op = GemmOp()
    types = [graph.node(o).type for o in operands]
    product = graph.add(op, operands, op.infer(types), node.location, annotations)
    return _reshape(graph, node, product, node.type.shape, bounds)


def _reshape(
    graph: Graph, node: Node, x: ValueId, shape: tuple[int, ...], bounds: Interval | None
) -> ValueId:
    if graph.node(x).type.shape == shape:
        return x
    op = ReshapeOp(shape)
    annotations = (bounds,) if bounds is not None else ()
    return graph.add(op, (x,), op.infer([graph.node(x).type]), node.location, annotations)


# -- folding chains of linear maps -------------------------------------------------------
def gemm_map(graph: Graph, value: ValueId) -> AffineMap | None:
    """A gemm / 2-D matmul of the secret sample (1, K) by constants as a map; None for
    any other node (the lowering refuses the forms it cannot compute, with their reasons)."""
    node = graph.node(value)
    operands = graph.operands(value)
    if not isinstance(node.op, GemmOp | MatMulOp) or secret_operand(graph, value)[0] != 0:
        return None
    if any(not isinstance(graph.node(o).op, ConstantOp) for o in operands[1:]):
        return None
    x, weights = graph.node(operands[0]).type, _constant(graph, operands[1])
    if x.rank != 2 or weights.ndim != 2:
        return None
    if isinstance(node.op, MatMulOp):
        return AffineMap(weights, np.zeros(weights.shape[1]))
    if node.op.trans_a:
        return None
    matrix = node.op.alpha * (weights.T if node.op.trans_b else weights)
    bias = _constant(graph, operands[2]) if len(operands) > 2 else np.zeros(1)
    shift = np.broadcast_to(node.op.beta * bias, (1, matrix.shape[1]))[0]
    return AffineMap(matrix, np.array(shift))


def fold_gemm_chains(function: Function) -> int:
    """Compose each gemm with the gemm it reads through reshapes only, where every value
    between them has no other user: one mat-vec instead of two. Returns the folds made."""
    graph = function.graph
    folds = 0
    for value in graph.topological_order():
        if value not in graph:
            continue
        second = gemm_map(graph, value)
        if second is None:
            continue
        source = _single_use_chain(function, graph.operands(value)[0])
        first = None if source is None else gemm_map(graph, source)
        if source is None or first is None:
            continue
        x = graph.operands(source)[0]
        node = graph.node(value)
        # only the range: other annotations (a calibrated dot magnitude) were the
        # second matrix's, not the composed one's
        bounds = node.annotation(Interval)
        result = emit_gemm(graph, node, x, first.then(second), (bounds,) if bounds else ())
        function.replace_uses(value, result)
        old = graph.operands(value)
        graph.remove(value)
        for operand in old:
            erase_if_dead(function, operand)
        folds += 1
    return folds


def _single_use_chain(function: Function, value: ValueId) -> ValueId | None:
    """The node `value` comes from through reshapes, if nothing else reads the values
    on the way (an output or a second user keeps them: folding would compute twice)."""
    graph = function.graph
    outputs = {v for _, v in function.outputs}
    while True:
        if value in outputs or len(graph.users(value)) != 1:
            return None
        if not isinstance(graph.node(value).op, ReshapeOp):
            return value
        value = graph.operands(value)[0]
