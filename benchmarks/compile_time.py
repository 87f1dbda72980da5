"""Compile time against depth: chains of 10, 100 and 1000 Gemm+Relu layers.

    .venv/bin/python benchmarks/compile_time.py              # the table
    .venv/bin/python benchmarks/compile_time.py --passes     # + seconds per stage
    .venv/bin/python benchmarks/compile_time.py --calls      # + Python calls per layer
    .venv/bin/python benchmarks/compile_time.py --profile 1000   # cProfile, top 25

Each chain has width 16, seeded random weights and a symbolic batch axis; it is
compiled with `fhec.compile(backend="reference")` and 8 calibration samples, so
the whole common pipeline runs, annotate-ranges included; the time is the best of
`--repeats` compiles (the machine is shared). Compilation should grow
linearly with depth: the last column is the per-layer time over the 10-layer
chain's, near 1 when it does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import fhec

WIDTH = 16
DEPTHS = (10, 100, 1000)
CALIBRATION_SAMPLES = 8


def gemm_relu_chain(layers: int, width: int = WIDTH, seed: int = 0) -> onnx.ModelProto:
    """x (N, width) -> [Gemm(transB) -> Relu] * layers -> y."""
    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = "x"
    for index in range(layers):
        weight, bias = f"w{index}", f"b{index}"
        # 1/sqrt(width) keeps activations O(1) through a deep chain.
        scale = 1.0 / np.sqrt(width)
        initializers += [
            numpy_helper.from_array(
                (rng.standard_normal((width, width)) * scale).astype(np.float32), weight
            ),
            numpy_helper.from_array((rng.standard_normal(width) * 0.1).astype(np.float32), bias),
        ]
        output = "y" if index == layers - 1 else f"relu{index}"
        nodes += [
            helper.make_node(
                "Gemm", [current, weight, bias], [f"gemm{index}"], name=f"gemm{index}", transB=1
            ),
            helper.make_node("Relu", [f"gemm{index}"], [output], name=f"relu{index}"),
        ]
        current = output
    graph = helper.make_graph(
        nodes,
        f"chain{layers}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def calibration(width: int = WIDTH) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((CALIBRATION_SAMPLES, width)).astype(np.float32)}


def time_compile(model: onnx.ModelProto, repeats: int = 1) -> float:
    """The best of `repeats` compiles: the machine is shared, the minimum is the cost."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fhec.compile(model, backend="reference", calibration=calibration())
        best = min(best, time.perf_counter() - start)
    return best


def stage_times(model: onnx.ModelProto) -> dict[str, float]:
    """Seconds in the importer and in each pass of the reference pipeline (summed over
    repeated passes), through the same functions `fhec.compile` calls."""
    from fhec.frontend import import_onnx
    from fhec.passes import PassContext, parse_pipeline, pipeline_for, run_pipeline
    from fhec.runtime.calibration import calibration_samples

    times: dict[str, float] = {}
    start = time.perf_counter()
    imported = import_onnx(model)
    times["import"] = time.perf_counter() - start
    context = PassContext(calibration_samples(imported.signature, calibration()))
    mark = time.perf_counter()

    def after_each(item: object, _module: object) -> None:
        nonlocal mark
        now = time.perf_counter()
        name = str(getattr(item, "name", item))
        times[name] = times.get(name, 0.0) + now - mark
        mark = now

    passes = parse_pipeline(",".join(pipeline_for("reference")))
    run_pipeline(imported.module, passes, context, after_each=after_each)
    return times


def print_table(depths: Sequence[int], repeats: int) -> None:
    time_compile(gemm_relu_chain(2))  # warm-up: imports and caches outside the timings
    print(f"| layers | seconds | seconds per layer | per-layer ratio to {depths[0]} layers |")
    print("| ---: | ---: | ---: | ---: |")
    baseline = None
    for layers in depths:
        seconds = time_compile(gemm_relu_chain(layers), repeats)
        per_layer = seconds / layers
        baseline = baseline or per_layer
        print(
            f"| {layers} | {seconds:.3f} | {per_layer * 1000:.2f} ms | {per_layer / baseline:.2f} |"
        )


def print_stages(depths: Sequence[int]) -> None:
    rows = {layers: stage_times(gemm_relu_chain(layers)) for layers in depths}
    stages = list(rows[depths[0]])
    print("\n| stage (ms per layer) | " + " | ".join(f"{d} layers" for d in depths) + " |")
    print("| --- |" + " ---: |" * len(depths))
    for stage in stages:
        cells = " | ".join(f"{rows[d][stage] / d * 1000:.2f}" for d in depths)
        print(f"| {stage} | {cells} |")


def python_calls(model: onnx.ModelProto) -> int:
    """Python function calls in one compile: a count the machine's load cannot blur."""
    profiler = cProfile.Profile()
    profiler.enable()
    fhec.compile(model, backend="reference", calibration=calibration())
    profiler.disable()
    return int(pstats.Stats(profiler).total_calls)  # type: ignore[attr-defined]


def print_calls(depths: Sequence[int]) -> None:
    print("\n| layers | Python calls | calls per layer | per-layer ratio |")
    print("| ---: | ---: | ---: | ---: |")
    baseline = None
    for layers in depths:
        calls = python_calls(gemm_relu_chain(layers))
        baseline = baseline or calls / layers
        print(f"| {layers} | {calls} | {calls / layers:.0f} | {calls / layers / baseline:.2f} |")


def profile(layers: int) -> None:
    model = gemm_relu_chain(layers)
    time_compile(gemm_relu_chain(2))
    profiler = cProfile.Profile()
    profiler.enable()
    fhec.compile(model, backend="reference", calibration=calibration())
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many compiles")
    parser.add_argument("--passes", action="store_true", help="also time each stage")
    parser.add_argument("--calls", action="store_true", help="also count Python calls")
    parser.add_argument("--profile", type=int, metavar="LAYERS", help="cProfile one compile")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    print_table(args.depths, args.repeats)
    if args.passes:
        print_stages(args.depths)
    if args.calls:
        print_calls(args.depths)


if __name__ == "__main__":
    main()
