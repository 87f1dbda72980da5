"""Every derivative rule against central finite differences, in float64.

Each case is one op whose trainable operands are function inputs (the others constants).
`differentiate` (mse loss, lr = 1) builds its training step; the gradient it used is
p - p', compared with the central difference of the loss computed by the op's own
`evaluate`. Operands are drawn away from kinks (relu at 0, clip at its bounds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from fhec.ir.graph import Function, Graph, Module
from fhec.ir.interpreter import evaluate
from fhec.ir.location import Location
from fhec.ir.op import Op
from fhec.ir.ops import elementwise as ew
from fhec.ir.ops.core import ConstantOp, InputOp
from fhec.ir.ops.linalg import ConvOp, GemmOp, MatMulOp
from fhec.ir.ops.nn import AvgPoolOp, BatchNormOp, LogSoftmaxOp, MaxPoolOp, SoftmaxOp
from fhec.ir.ops.poly import ChebyshevOp
from fhec.ir.ops.shape import (
    CastOp,
    ConcatOp,
    PadOp,
    ReduceMeanOp,
    ReduceSumOp,
    ReshapeOp,
    TransposeOp,
)
from fhec.ir.types import DType, TensorType
from fhec.passes import run_pipeline
from fhec.passes.differentiate import Differentiate, Loss

# Largest |analytic - numeric| / largest |numeric| allowed (float64, step 1e-6).
TOLERANCE = 1e-6
STEP = 1e-6

Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def away_from(*kinks: float) -> Sampler:
    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        values = rng.uniform(-2.0, 2.0, shape)
        for kink in kinks:
            near = np.abs(values - kink) < 0.1
            values[near] += 0.2 * np.sign(values[near] - kink + 1e-12)
        return values

    return sample


@dataclass(frozen=True)
class Case:
    name: str
    op: Op
    shapes: tuple[tuple[int, ...], ...]
    trainable: tuple[int, ...]  # operand positions that are inputs (differentiated)
    sample: tuple[Sampler, ...] = ()  # per operand; default normal

    def sampler(self, index: int) -> Sampler:
        return self.sample[index] if index < len(self.sample) else normal


def _bn_samplers() -> tuple[Sampler, ...]:
    return (normal, normal, normal, normal, positive)


def _window(rank: int, **changes: object) -> dict[str, object]:
    return {"strides": (1,) * rank, "pads": (0,) * (2 * rank), "dilations": (1,) * rank,
            **changes}


KINKED = away_from(0.0)
CASES = [
    Case("add_broadcast", ew.AddOp(), ((2, 3, 4), (3, 1)), (0, 1)),
    Case("sub_broadcast", ew.SubOp(), ((3, 4), (4,)), (0, 1)),
    Case("mul", ew.MulOp(), ((3, 4), (3, 4)), (0, 1)),
    Case("mul_same_operand_broadcast", ew.MulOp(), ((1, 4), (3, 4)), (0, 1)),
    Case("div", ew.DivOp(), ((3, 4), (1, 4)), (0, 1), (normal, positive)),
    Case("neg", ew.NegOp(), ((3, 4),), (0,)),
    Case("abs", ew.AbsOp(), ((3, 4),), (0,), (KINKED,)),
    Case("pow_2", ew.PowOp(2.0), ((3, 4),), (0,)),
    Case("pow_3", ew.PowOp(3.0), ((3, 4),), (0,)),
    Case("pow_half", ew.PowOp(0.5), ((3, 4),), (0,), (positive,)),
    Case("pow_minus_one", ew.PowOp(-1.0), ((3, 4),), (0,), (positive,)),
    Case("pow_1", ew.PowOp(1.0), ((3, 4),), (0,)),
    Case("sqrt", ew.SqrtOp(), ((3, 4),), (0,), (positive,)),
    Case("exp", ew.ExpOp(), ((3, 4),), (0,)),
    Case("erf", ew.ErfOp(), ((3, 4),), (0,)),
    Case("relu", ew.ReluOp(), ((3, 4),), (0,), (KINKED,)),
    Case("leaky_relu", ew.LeakyReluOp(0.1), ((3, 4),), (0,), (KINKED,)),
    Case("prelu", ew.PReluOp(), ((2, 3, 4), (3, 1)), (0, 1), (KINKED, normal)),
    Case("sigmoid", ew.SigmoidOp(), ((3, 4),), (0,)),
    Case("tanh", ew.TanhOp(), ((3, 4),), (0,)),
    Case("softplus", ew.SoftplusOp(), ((3, 4),), (0,)),
    Case("elu", ew.EluOp(0.7), ((3, 4),), (0,), (KINKED,)),
    Case("selu", ew.SeluOp(), ((3, 4),), (0,), (KINKED,)),
    Case("gelu", ew.GeluOp(), ((3, 4),), (0,)),
    Case("gelu_tanh", ew.GeluOp(ew.GeluApproximation.TANH), ((3, 4),), (0,)),
    Case("clip", ew.ClipOp(-0.5, 0.5), ((3, 4),), (0,), (away_from(-0.5, 0.5),)),
    Case("clip_low", ew.ClipOp(low=0.3), ((3, 4),), (0,), (away_from(0.3),)),
    Case("chebyshev", ChebyshevOp((0.1, 0.5, 0.2, -0.3, 0.05), -2.0, 3.0), ((3, 4),), (0,)),
    Case("gemm", GemmOp(0.7, 1.3), ((3, 4), (4, 2), (2,)), (0, 1, 2)),
    Case("gemm_trans_a", GemmOp(trans_a=True), ((4, 3), (4, 2), (3, 1)), (0, 1, 2)),
    Case("gemm_trans_b", GemmOp(trans_b=True), ((3, 4), (2, 4), (3, 2)), (0, 1, 2)),
    Case("gemm_trans_both", GemmOp(0.5, 2.0, True, True), ((4, 3), (2, 4), ()), (0, 1, 2)),
    Case("gemm_frozen_input", GemmOp(), ((3, 4), (4, 2)), (1,)),
    Case("matmul", MatMulOp(), ((3, 4), (4, 2)), (0, 1)),
    Case("matmul_vector_left", MatMulOp(), ((4,), (4, 2)), (0, 1)),
    Case("matmul_vector_right", MatMulOp(), ((3, 4), (4,)), (0, 1)),
    Case("matmul_batched", MatMulOp(), ((2, 1, 3, 4), (3, 4, 2)), (0, 1)),
    Case("conv2d_group_stride_dilation",
         ConvOp(**_window(2, strides=(2, 1), pads=(1, 0, 1, 1), dilations=(1, 2)), group=2),
         ((2, 4, 5, 6), (4, 2, 3, 2), (4,)), (0, 1, 2)),
    Case("conv1d", ConvOp(**_window(1, pads=(1, 1))), ((2, 3, 7), (2, 3, 3), (2,)), (0, 1, 2)),
    Case("avg_pool_ceil", AvgPoolOp((2, 2), (2, 2), (0, 0, 1, 1), (1, 1), ceil_mode=True),
         ((2, 2, 5, 5),), (0,)),
    Case("avg_pool_count_pad", AvgPoolOp((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
         ((2, 2, 5, 5),), (0,)),
    Case("max_pool", MaxPoolOp((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)), ((2, 2, 5, 5),), (0,)),
    Case("batch_norm", BatchNormOp(1e-3), ((2, 3, 4, 4), (3,), (3,), (3,), (3,)), (0, 1, 2),
         _bn_samplers()),
    Case("softmax", SoftmaxOp(axis=1), ((3, 5),), (0,)),
    Case("softmax_axis0", SoftmaxOp(axis=0), ((3, 5),), (0,)),
    Case("log_softmax", LogSoftmaxOp(axis=-1), ((2, 3, 4),), (0,)),
    Case("reshape", ReshapeOp((6, 4)), ((2, 3, 4),), (0,)),
    Case("transpose", TransposeOp((2, 0, 1)), ((2, 3, 4),), (0,)),
    Case("reduce_sum", ReduceSumOp((0, 2), keepdims=False), ((2, 3, 4),), (0,)),
    Case("reduce_sum_keepdims", ReduceSumOp((1,), keepdims=True), ((2, 3, 4),), (0,)),
    Case("reduce_mean", ReduceMeanOp((1, 2), keepdims=False), ((2, 3, 4),), (0,)),
    Case("concat", ConcatOp(1), ((2, 3), (2, 2), (2, 4)), (0, 1, 2)),
    Case("pad", PadOp((1, 0, 0, 2), 0.5), ((3, 4),), (0,)),
    Case("pad_crop", PadOp((-1, 1, 0, -2)), ((3, 4),), (0,)),
    Case("cast", CastOp(DType.F64), ((3, 4),), (0,)),
]


def _module(case: Case, values: list[np.ndarray]) -> Module:
    graph = Graph()
    operands = []
    for index, value in enumerate(values):
        if index in case.trainable:
            tensor_type = TensorType(value.shape, DType.F64)
            op: Op = InputOp(f"p{index}", tensor_type)
        else:
            op = ConstantOp.of(value)
        operands.append(graph.add(op, (), op.infer(()), Location(f"p{index}", "Initializer")))
    result_type = case.op.infer([graph.node(o).type for o in operands])
    y = graph.add(case.op, operands, result_type, Location("node", case.name))
    return Module(Function("main", graph, [("y", y)]))


def _loss(case: Case, values: list[np.ndarray], label: np.ndarray) -> float:
    return float(np.mean((case.op.evaluate(values) - label) ** 2))


def _numeric_gradient(case: Case, values: list[np.ndarray], label: np.ndarray, index: int
                      ) -> np.ndarray:
    grad = np.zeros_like(values[index])
    for position in np.ndindex(values[index].shape):
        shifted = [v.copy() for v in values]
        step = STEP * max(1.0, abs(float(values[index][position])))
        shifted[index][position] += step
        up = _loss(case, shifted, label)
        shifted[index][position] -= 2 * step
        down = _loss(case, shifted, label)
        grad[position] = (up - down) / (2 * step)
    return grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rule_matches_finite_differences(case: Case) -> None:
    rng = np.random.default_rng(len(case.name))
    values = [np.asarray(case.sampler(i)(rng, s), dtype=np.float64)
              for i, s in enumerate(case.shapes)]
    label = rng.standard_normal(case.op.evaluate(values).shape)
    names = ",".join(f"p{i}" for i in case.trainable)
    step = run_pipeline(_module(case, values), [Differentiate(names, Loss.MSE, lr=1.0)])
    inputs = {f"p{i}": values[i] for i in case.trainable}
    outputs = evaluate(step, {**inputs, "label": label})
    assert outputs["loss"] == pytest.approx(_loss(case, values, label), rel=1e-12)
    for index in case.trainable:
        analytic = values[index] - outputs[f"p{index}"]  # p' = p - 1.0 * grad
        numeric = _numeric_gradient(case, values, label, index)
        error = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-8)
        assert error < TOLERANCE, f"operand {index}: relative error {error:.2e}"


def test_every_rule_has_a_case() -> None:
    from fhec.passes.derivatives import RULES

    covered = {type(case.op) for case in CASES}
    assert set(RULES) - covered == set()
