"""The compile report: JSON-able facts about a compiled module (what `fhec compile
--json` prints and artifacts keep), and its text form for the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from fhec.ir.errors import InputError
from fhec.ir.graph import Module
from fhec.ir.interval import Interval
from fhec.ir.signature import Signature, TensorSpec


def build_report(
    backend: str,
    module: Module,
    signature: Signature,
    pipeline: Sequence[str],
    calibration_count: int,
) -> dict[str, object]:
    """JSON-able facts about a compiled module: what `--json` prints and artifacts keep.
    Backends add their own keys (parameters, depth, error bounds)."""
    graph = module.graph
    ops = Counter(graph.node(value).op.name for value in graph)
    report: dict[str, object] = {
        "backend": backend,
        "pipeline": list(pipeline),
        "node_count": len(graph),
        "ops": dict(sorted(ops.items())),
        "inputs": [_spec_report(spec) for spec in signature.inputs],
        "outputs": [_spec_report(spec) for spec in signature.outputs],
        "calibration_samples": calibration_count,
    }
    ranges = _value_ranges(module)
    if ranges:
        report["ranges"] = ranges
    largest = _largest_magnitude(module)
    if largest is not None:
        report["largest_magnitude"] = largest
    return report


def _spec_report(spec: TensorSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "shape": list(spec.shape),
        "dtype": spec.dtype.numpy.name,
        "batch_axis": spec.batch_axis,
    }


def _value_ranges(module: Module) -> dict[str, list[float]]:
    """[lo, hi] of each input and output the range analysis annotated, by name."""
    from fhec.ir.ops.core import InputOp

    graph = module.graph
    named = [
        (op.input_name, value)
        for value in module.function.inputs
        if isinstance(op := graph.node(value).op, InputOp)
    ]
    named += list(module.function.outputs)
    ranges: dict[str, list[float]] = {}
    for name, value in named:
        interval = graph.node(value).annotation(Interval)
        if interval is not None:
            ranges[name] = [interval.lo, interval.hi]
    return ranges


def _largest_magnitude(module: Module) -> dict[str, object] | None:
    """The widest bound of any computed (non-constant) value, and where: what sets
    the precision an encrypted run needs."""
    from fhec.ir.ops.core import ConstantOp

    graph = module.graph
    best: tuple[float, str] | None = None
    for value in graph:
        node = graph.node(value)
        interval = node.annotation(Interval)
        if interval is None or isinstance(node.op, ConstantOp):
            continue
        if best is None or interval.magnitude > best[0]:
            best = (interval.magnitude, node.location.describe())
    return None if best is None else {"value": best[0], "at": best[1]}


def predicted_classes(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The class of each sample: an integer output (a classifier's labels) if there is
    one, else the argmax of the one score output of shape (N, classes)."""
    for value in outputs.values():
        if np.asarray(value).dtype.kind in "iu":
            return np.asarray(value).reshape(-1)
    scores = list(outputs.values())
    if len(scores) != 1 or np.asarray(scores[0]).ndim != 2:
        raise InputError(
            "cannot tell the predicted class: the model has no integer label output and "
            f"not exactly one (N, classes) score output (outputs: {', '.join(outputs)})",
            hint="compute the accuracy from model.run's outputs yourself",
        )
    return np.asarray(np.asarray(scores[0]).argmax(axis=1))


def format_summary(report: Mapping[str, object]) -> str:
    """The report as a few aligned lines; keys a backend added come last, as they are."""
    lines = [f"backend:  {report.get('backend', '?')}"]
    pipeline = report.get("pipeline")
    if isinstance(pipeline, list):
        lines.append("pipeline: " + ", ".join(str(p) for p in pipeline))
    for key in ("inputs", "outputs"):
        specs = report.get(key)
        if isinstance(specs, list):
            lines.append(f"{key}:")
            lines += [f"  {_describe_spec(spec)}" for spec in specs if isinstance(spec, dict)]
    batch = _compiled_batch(report.get("inputs"))
    if batch is not None:
        lines.append(f"batch:    N is any number of samples, run {batch} at a time")
    ops = report.get("ops")
    if isinstance(ops, dict):
        lines.append(f"ops ({report.get('node_count', sum(ops.values()))} nodes):")
        width = max((len(str(name)) for name in ops), default=0)
        lines += [f"  {name:<{width}}  {count}" for name, count in ops.items()]
    lines += _format_ranges(report)
    known = {
        "backend",
        "pipeline",
        "inputs",
        "outputs",
        "ops",
        "node_count",
        "ranges",
        "calibration_samples",
        "largest_magnitude",
    }
    lines += [f"{key}: {value}" for key, value in report.items() if key not in known]
    return "\n".join(lines)


def _format_ranges(report: Mapping[str, object]) -> list[str]:
    ranges = report.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        return []
    samples = report.get("calibration_samples")
    source = (
        f"calibrated on {samples} samples"
        if isinstance(samples, int) and samples > 0
        else "interval analysis, no calibration data"
    )
    width = max(len(str(name)) for name in ranges)
    lines = [f"value ranges ({source}):"]
    for name, bounds in ranges.items():
        if isinstance(bounds, list) and len(bounds) == 2:
            lines.append(f"  {name:<{width}}  [{bounds[0]:.6g}, {bounds[1]:.6g}]")
    largest = report.get("largest_magnitude")
    if isinstance(largest, dict):
        magnitude = largest.get("value", 0)
        lines.append(f"  largest |value| inside: {magnitude:.6g} at {largest.get('at')}")
    return lines


def _describe_spec(spec: dict[str, object]) -> str:
    shape = spec.get("shape")
    axis = spec.get("batch_axis")
    dims = [
        "N" if index == axis else str(size)
        for index, size in enumerate(shape if isinstance(shape, list) else [])
    ]
    return f"{spec.get('name')}: {spec.get('dtype')}[{', '.join(dims)}]"


def _compiled_batch(specs: object) -> int | None:
    for spec in specs if isinstance(specs, list) else []:
        axis, shape = spec.get("batch_axis"), spec.get("shape")
        if isinstance(axis, int) and isinstance(shape, list) and 0 <= axis < len(shape):
            return int(shape[axis])
    return None
