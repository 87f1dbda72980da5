"""Converters for the ai.onnx.ml ops scikit-learn exports (skl2onnx): linear models,
Normalizer, and ZipMap.

Each follows onnxruntime's kernel, which is the reference users compare against,
where it is more specific than the ONNX spec (the binary LinearClassifier, zero-norm
rows of Normalizer). ZipMap differs on purpose: fhec returns the probabilities
tensor itself, shape (N, classes), where onnxruntime returns a list of dicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from fhec.frontend.context import ConversionContext
from fhec.frontend.registry import ML_DOMAIN, converter
from fhec.ir.graph import ValueId
from fhec.ir.ops.elementwise import (
    AbsOp,
    AddOp,
    ClipOp,
    DivOp,
    ExpOp,
    MulOp,
    SigmoidOp,
    SqrtOp,
    SubOp,
)
from fhec.ir.ops.linalg import GemmOp
from fhec.ir.ops.nn import SoftmaxOp
from fhec.ir.ops.shape import (
    ArgMaxOp,
    CastOp,
    ConcatOp,
    GatherOp,
    ReduceMaxOp,
    ReduceSumOp,
    ReshapeOp,
)
from fhec.ir.types import DType

# -- shared pieces ----------------------------------------------------------------


def _feature_matrix(ctx: ConversionContext) -> ValueId:
    """Input 0 as a float32 (samples, features) matrix; a vector is one sample, as
    onnxruntime reads it."""
    x = ctx.input(0)
    x_type = ctx.type_of(x)
    if x_type.rank == 1:
        x = ctx.emit(ReshapeOp((1, x_type.shape[0])), x)
    elif x_type.rank != 2:
        raise ctx.error(f"input of shape {x_type.shape}: expected (samples, features)")
    return _as_float32(ctx, x)


def _as_float32(ctx: ConversionContext, x: ValueId) -> ValueId:
    return x if ctx.type_of(x).dtype == DType.F32 else ctx.emit(CastOp(DType.F32), x)


def _linear_scores(ctx: ConversionContext, x: ValueId, targets: int) -> ValueId:
    """x @ coefficients.T + intercepts, with coefficients laid out (targets, features)."""
    features = ctx.type_of(x).shape[1]
    coefficients = np.asarray(ctx.attr("coefficients", []), dtype=np.float32)
    if coefficients.size != targets * features:
        raise ctx.error(
            f"{coefficients.size} coefficients do not fit {targets} target(s) x {features} features"
        )
    intercepts = np.asarray(ctx.attr("intercepts", []), dtype=np.float32)
    if intercepts.size not in (0, targets):
        raise ctx.error(f"{intercepts.size} intercepts for {targets} target(s)")
    weights = ctx.constant(coefficients.reshape(targets, features))
    if intercepts.size == 0:
        return ctx.emit(GemmOp(trans_b=True), x, weights)
    return ctx.emit(GemmOp(trans_b=True), x, weights, ctx.constant(intercepts))


def _reject_transform(ctx: ConversionContext, allowed: Sequence[str]) -> str:
    transform = str(ctx.attr("post_transform", "NONE"))
    if transform not in allowed:
        raise ctx.error(
            f"post_transform={transform} is not supported",
            hint=f"supported: {', '.join(allowed)}",
        )
    return transform


# -- Scaler -----------------------------------------------------------------------


@converter("Scaler", since=1, domain=ML_DOMAIN, notes="(x - offset) * scale, per feature")
def convert_scaler(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = _feature_matrix(ctx)
    features = ctx.type_of(x).shape[1]
    offset = np.asarray(ctx.attr("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(ctx.attr("scale", [1.0]), dtype=np.float32)
    for name, values in (("offset", offset), ("scale", scale)):
        if values.size not in (1, features):
            raise ctx.error(f"{name} has {values.size} values for {features} features")
    shifted = ctx.emit(SubOp(), x, ctx.constant(offset))
    return [ctx.emit(MulOp(), shifted, ctx.constant(scale))]


# -- LinearRegressor --------------------------------------------------------------


@converter("LinearRegressor", since=1, domain=ML_DOMAIN, notes="post_transform NONE only")
def convert_linear_regressor(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    _reject_transform(ctx, ["NONE"])
    x = _feature_matrix(ctx)
    return [_linear_scores(ctx, x, int(ctx.attr("targets", 1)))]


# -- LinearClassifier -------------------------------------------------------------


@converter(
    "LinearClassifier",
    since=1,
    domain=ML_DOMAIN,
    notes="integer class labels; post_transform NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO",
)
def convert_linear_classifier(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    if ctx.has_attr("classlabels_strings"):
        raise ctx.error(
            "string class labels are not supported: fhec computes on numeric tensors",
            hint="train on integer labels (e.g. with sklearn's LabelEncoder) and map them back",
        )
    transform = _reject_transform(ctx, ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
    # multi_class is ignored, as onnxruntime ignores it: the scores decide alone.
    x = _feature_matrix(ctx)
    if not ctx.has_attr("classlabels_ints"):
        raise ctx.error("class labels are missing: the spec requires classlabels_ints")
    labels = np.asarray(ctx.attr("classlabels_ints"), np.int64)
    # onnxruntime and ONNX shape inference both count the classes by the intercepts.
    targets = len(ctx.attr("intercepts", []))
    if targets == 0:
        raise ctx.error("intercepts are missing: they give the number of score columns")
    scores = _linear_scores(ctx, x, targets)
    if targets == 1:
        return _binary_outputs(ctx, scores, transform, labels)
    if labels.size != targets:
        raise ctx.error(f"{labels.size} class labels for {targets} score columns")
    label = _label_of_best(ctx, scores, labels)
    return [label, _post_transform(ctx, scores, transform)]


def _label_of_best(ctx: ConversionContext, scores: ValueId, labels: np.ndarray) -> ValueId:
    """labels[argmax(scores)] per row; ties go to the first class, as in onnxruntime."""
    best = ctx.emit(ArgMaxOp(axis=1, keepdims=False), scores)
    if np.array_equal(labels, np.arange(labels.size)):
        return best
    return ctx.emit(GatherOp(axis=0), ctx.constant(labels), best)


def _binary_outputs(
    ctx: ConversionContext, score: ValueId, transform: str, labels: np.ndarray
) -> list[ValueId]:
    """One score column z (onnxruntime's binary case): label = labels[1] if z > 0 else
    labels[0]; probabilities [1 - p, p] with p = sigmoid(z) under LOGISTIC, else z."""
    if labels.size != 2:
        raise ctx.error(f"one score column needs 2 class labels, found {labels.size}")
    zeros = ctx.constant(np.zeros(ctx.type_of(score).shape, dtype=np.float32))
    # argmax over [0, z] is 1 exactly when z > 0 (a tie at 0 goes to the first).
    label = _label_of_best(ctx, ctx.emit(ConcatOp(axis=1), zeros, score), labels)
    positive = ctx.emit(SigmoidOp(), score) if transform == "LOGISTIC" else score
    negative = ctx.emit(SubOp(), _f32(ctx, 1.0), positive)
    return [label, ctx.emit(ConcatOp(axis=1), negative, positive)]


def _post_transform(ctx: ConversionContext, scores: ValueId, transform: str) -> ValueId:
    if transform == "LOGISTIC":
        return ctx.emit(SigmoidOp(), scores)
    if transform == "SOFTMAX":
        return ctx.emit(SoftmaxOp(axis=1), scores)
    if transform == "SOFTMAX_ZERO":
        return _softmax_zero(ctx, scores)
    return scores


def _softmax_zero(ctx: ConversionContext, scores: ValueId) -> ValueId:
    """onnxruntime's SOFTMAX_ZERO per row: scores with |v| <= 1e-7 are left out of the
    sum and become v * exp(-max) / sum; the others are exp(v - max) / sum."""
    row_max = ctx.emit(ReduceMaxOp(axes=(1,), keepdims=True), scores)
    kept = _above_tiny(ctx, ctx.emit(AbsOp(), scores))
    exps = ctx.emit(MulOp(), kept, ctx.emit(ExpOp(), ctx.emit(SubOp(), scores, row_max)))
    # exp(-max) only matters in rows holding a tiny score, where max >= -1e-7: the
    # clip keeps it finite in the other rows, where it is multiplied by 0.
    minus_max = ctx.emit(ClipOp(high=1.0), ctx.emit(SubOp(), _f32(ctx, 0.0), row_max))
    dropped = ctx.emit(SubOp(), _f32(ctx, 1.0), kept)
    tiny = ctx.emit(MulOp(), ctx.emit(MulOp(), dropped, scores), ctx.emit(ExpOp(), minus_max))
    total = ctx.emit(ReduceSumOp(axes=(1,), keepdims=True), exps)
    return ctx.emit(DivOp(), ctx.emit(AddOp(), exps, tiny), total)


# onnxruntime's SOFTMAX_ZERO drops scores with |v| <= 1e-7f; float32(1e-7) lies in
# [2**-24, 2**-23), where one ulp is 2**-47.
_TINY = 1e-7  # compared as float32, as onnxruntime does
_TINY_ULP = 2.0**-47


def _above_tiny(ctx: ConversionContext, x: ValueId) -> ValueId:
    """1.0 where x > 1e-7f, else 0.0, exactly, for float32 x.

    When x > 1e-7f, x - 1e-7f is at least one ulp of 1e-7f (exact near it, by Sterbenz's
    lemma), so clipped to [0, ulp] it is 0 or the ulp, and 1 / ulp scales that to 0 or 1.
    """
    shifted = ctx.emit(SubOp(), x, _f32(ctx, _TINY))
    clipped = ctx.emit(ClipOp(low=0.0, high=_TINY_ULP), shifted)
    return ctx.emit(MulOp(), clipped, _f32(ctx, 1.0 / _TINY_ULP))


def _f32(ctx: ConversionContext, value: float) -> ValueId:
    return ctx.constant(np.array(value, dtype=np.float32))


# -- Normalizer -------------------------------------------------------------------


@converter(
    "Normalizer",
    since=1,
    domain=ML_DOMAIN,
    notes="MAX, L1, L2 per row; rows with a zero norm pass through, as in onnxruntime",
)
def convert_normalizer(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    x = ctx.input(0)
    rank = ctx.type_of(x).rank
    if rank not in (1, 2):
        raise ctx.error(f"input of rank {rank}: Normalizer takes a vector or a matrix")
    x = _as_float32(ctx, x)
    row = (rank - 1,)
    norm = str(ctx.attr("norm", "MAX"))
    if norm == "MAX":
        denominator = ctx.emit(ReduceMaxOp(row, keepdims=True), x)
    elif norm == "L1":
        denominator = ctx.emit(ReduceSumOp(row, keepdims=True), ctx.emit(AbsOp(), x))
    elif norm == "L2":
        squares = ctx.emit(ReduceSumOp(row, keepdims=True), ctx.emit(MulOp(), x, x))
        denominator = ctx.emit(SqrtOp(), squares)
    else:
        raise ctx.error(f"norm={norm!r} is not one of MAX, L1, L2")
    return [ctx.emit(DivOp(), x, _nonzero_or_one(ctx, denominator))]


def _nonzero_or_one(ctx: ConversionContext, d: ValueId) -> ValueId:
    """d where d != 0, else 1 (onnxruntime leaves a row with a zero norm unchanged).

    |d| clipped to 2**-126 (float32's smallest normal number) and scaled by 2**126 is an
    exact 0/1 indicator for every normal d, so d + (1 - indicator) is d itself or 1.
    Subnormal norms (below 1.2e-38) are not exact; subnormals are avoided on purpose,
    as a flush-to-zero CPU mode would turn them into 0 and break every row.
    """
    clipped = ctx.emit(ClipOp(high=2.0**-126), ctx.emit(AbsOp(), d))
    nonzero = ctx.emit(MulOp(), clipped, _f32(ctx, 2.0**126))
    is_zero = ctx.emit(SubOp(), _f32(ctx, 1.0), nonzero)
    return ctx.emit(AddOp(), d, is_zero)


# -- ZipMap -----------------------------------------------------------------------


@converter(
    "ZipMap",
    since=1,
    domain=ML_DOMAIN,
    notes="returns the probabilities tensor (N, classes), not onnxruntime's list of dicts",
)
def convert_zipmap(node: onnx.NodeProto, ctx: ConversionContext) -> Sequence[ValueId]:
    # fhec's runtime returns tensors only: the columns are the classes, in label order.
    probabilities = ctx.input(0)
    labels = ctx.attr("classlabels_int64s", None) or ctx.attr("classlabels_strings", [])
    columns = ctx.type_of(probabilities).shape[-1]
    if len(labels) != columns:
        raise ctx.error(f"{len(labels)} class labels for {columns} probability columns")
    return [probabilities]
