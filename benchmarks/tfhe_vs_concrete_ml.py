"""fhec's TFHE backend against Concrete ML 1.9.0 on the same models, in one run.

    .venv/bin/python benchmarks/tfhe_vs_concrete_ml.py [--samples 2] [--rounding]
        [--no-unrounded] [--json out.json]
    .venv/bin/python benchmarks/tfhe_vs_concrete_ml.py --cnn [--json out.json]

(RESULTS.md: `--samples 2 --rounding --no-unrounded`; Concrete ML's default, unrounded
compile of the MLP takes minutes per encrypted sample on one core.)

Models: the golden MLP 64-32-16-10 on digits (tests/golden/mlp_digits: its PyTorch
weights, rebuilt as torch.nn for Concrete ML's compile_torch_model) and the golden
logistic regression on breast cancer (StandardScaler + LogisticRegression; Concrete
ML's own LogisticRegression fitted on the same standardized training split). Both
at 6 bits, and both compilers get the same calibration data: the whole training
split (Concrete ML's recommended calibration) for the main table. For the MLP, the
accuracy is also compared over more calibration sets, each given to both compilers
(`calibration_sets`: the golden 64 samples, which are the split's first 64, and
HALVES random halves of it): which samples calibrate a quantized model moves its
held-out accuracy by a few samples either way, for Concrete ML as for fhec.

Concrete ML needs concrete-python 2.10 and fhec 2.11, so its half runs in its own venv
(benchmarks/concrete_ml_env.sh builds it in build/concrete-ml-venv) as a child process
of this script (`--concrete-ml-part`), which prints JSON. Every process is pinned to
one core and one thread. Accuracy: concrete's simulation on the whole held-out split
(fhec: the mean of SIMULATIONS simulations, whose noise and approximate rounding vary
from run to run, and the integer module in clear; Concrete ML's exact rounding makes
its simulation deterministic); latency: keygen once, then encrypt, execute, decrypt
per sample, averaged over --samples samples (training-split compiles only).

`--cnn` compares the golden CNN instead (Conv + BatchNorm + ReLU + AvgPool + Linear),
calibrated on the training split and on the golden 64 samples: simulated accuracy and
concrete's statistics, without an encrypted run (minutes per sample for both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_common import SINGLE_THREAD, machine, single_core, timed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CML_PYTHON = ROOT / "build" / "concrete-ml-venv" / "bin" / "python"
BITS = 6
SIMULATIONS = 10  # fhec's accuracy: the mean of this many simulations
HALVES = 8  # random halves of the training split among the MLP's calibration sets
TRAINING_SPLIT = "training split"
Row = dict[str, Any]


def calibration_sets(case: str) -> dict[str, Any]:
    """Name -> calibration samples, the same for both compilers (computed in each venv
    from the same seeds): the training split first; for the MLP also the golden 64
    samples (the first 64 of the split), and HALVES random halves of the split."""
    import numpy as np

    if case == "logreg_breast_cancer":
        return {TRAINING_SPLIT: breast_cancer_training_split()}
    x_train, _ = digits_training_split()
    if case == "cnn_digits":  # (N, 1, 8, 8) images; no halves (minutes per compile pair)
        return {TRAINING_SPLIT: x_train.reshape(-1, 1, 8, 8), "golden 64": golden(case)[2]["input"]}
    sets = {TRAINING_SPLIT: x_train, "golden 64": golden(case)[2]["input"]}
    rng = np.random.default_rng(0)
    for half in range(HALVES):
        sets[f"half {half + 1}"] = x_train[rng.permutation(len(x_train))[: len(x_train) // 2]]
    return sets


def golden(case: str) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    import numpy as np

    with np.load(GOLDEN / case / "inputs.npz") as data:
        inputs = {key: data[key] for key in data.files}
    labels = inputs.pop("label")
    with np.load(GOLDEN / case / "calibration.npz") as data:
        calibration = {key: data[key] for key in data.files}
    return inputs, labels, calibration


# -- fhec ------------------------------------------------------------------------------
# fhec's configurations: its defaults (6-bit quantization; the weights of layers whose
# accumulators feed a lookup fitted to those accumulators, passes/tfhe_weights.py;
# lookups read 5 bits, or 6 where the calibration error asks for it,
# passes/tfhe_precision.py); the same with 5-bit or 6-bit lookups everywhere; and the
# previous defaults (weights fitted to their own range, 6-bit lookups).
UNIFORM = {"max_bits": 0}
FHEC_DEFAULT = f"fhec (tfhe, {BITS} bits)"
FHEC_CONFIGS: dict[str, dict[str, dict[str, object]]] = {
    FHEC_DEFAULT: {},
    f"fhec (tfhe, {BITS} bits, 5-bit lookups)": {"round-accumulators": {**UNIFORM, "bits": 5}},
    f"fhec (tfhe, {BITS} bits, 6-bit lookups)": {"round-accumulators": {**UNIFORM, "bits": 6}},
    f"fhec (tfhe, {BITS} bits, range-fit weights, 6-bit lookups)": {
        "quantize-tfhe": {"weight_fit": "range"},
        "round-accumulators": {**UNIFORM, "bits": 6},
    },
}


def fhec_row(
    case: str,
    samples: int,
    compiler: str,
    calibration_set: str = TRAINING_SPLIT,
    encrypted: bool = True,
) -> Row:
    """One compile of `case` with `compiler`'s options; keygen and latency on the
    training split's, unless not `encrypted`."""
    import numpy as np

    import fhec
    from fhec.api import CompiledModel

    inputs, labels, golden_calibration = golden(case)
    ((name, like),) = golden_calibration.items()
    calibration = {name: calibration_sets(case)[calibration_set].astype(like.dtype)}
    model, compile_seconds = timed(
        lambda: fhec.compile(
            GOLDEN / case / "model.onnx",
            backend="tfhe",
            calibration=calibration,
            options=FHEC_CONFIGS[compiler],
        )
    )
    clear = CompiledModel("reference", model.module, model.signature, model.pipeline)
    # concrete's simulation draws its noise anew each run, and approximate rounding is
    # one step off at times: the accuracy is the mean over SIMULATIONS runs
    draws = [model.run(inputs, mode="simulate") for _ in range(SIMULATIONS)]
    assert model.circuit is not None
    report = model.report
    row: Row = {
        "model": case,
        "compiler": compiler,
        "calibration": calibration_set,
        "accuracy": float(np.mean([np.mean(predicted(d) == labels) for d in draws])),
        "accuracy_draws": [int(np.sum(predicted(d) == labels)) for d in draws],
        "clear_accuracy": float(np.mean(predicted(clear.run(inputs)) == labels)),
        "lookups": report["programmable_bootstraps"],
        "max_bit_width": report["max_bit_width"],
        "complexity": model.circuit.statistics.get("complexity"),
        "compile_s": compile_seconds,
    }
    if encrypted and calibration_set == TRAINING_SPLIT:
        _, keygen_seconds = timed(model.circuit.keys)
        few = {key: value[:samples] for key, value in inputs.items()}
        executed, execute_seconds = timed(lambda: model.run(few))
        agrees = predicted(executed) == predicted(draws[0])[:samples]
        row.update(
            execute_agrees=int(np.sum(agrees)),
            keygen_s=keygen_seconds,
            latency_s=execute_seconds / samples,
            samples=samples,
        )
    return row


def predicted(outputs: dict[str, Any]) -> Any:
    for value in outputs.values():
        if value.dtype.kind in "iu":
            return value
    (scores,) = outputs.values()
    return scores.argmax(axis=-1)


# -- Concrete ML (run in its own venv) ------------------------------------------------
def install_shims() -> None:
    """Concrete ML 1.9.0 with torch 2.13: torch.onnx.export defaults to the dynamo
    exporter (Concrete ML needs the TorchScript one), and brevitas 0.10.2 calls
    Tensor.rename, which this torch lacks (a no-op on unnamed tensors)."""
    import functools

    import torch

    export = torch.onnx.export

    @functools.wraps(export)
    def export_without_dynamo(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("dynamo", False)
        return export(*args, **kwargs)

    torch.onnx.export = export_without_dynamo
    if not hasattr(torch.Tensor, "rename"):
        torch.Tensor.rename = lambda self, *args, **kwargs: self  # type: ignore[attr-defined]


def digits_torch_model() -> Any:
    """The golden MLP's weights as torch.nn (Gemm nodes in order, weights (out, in))."""
    import onnx
    import torch
    from onnx import numpy_helper

    proto = onnx.load(GOLDEN / "mlp_digits" / "model.onnx")
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    layers: list[torch.nn.Module] = []
    for node in proto.graph.node:
        if node.op_type == "Gemm":
            transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            weight = weights[node.input[1]]
            weight = weight if transposed else weight.T
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
            linear.weight.data = torch.tensor(weight.copy())
            linear.bias.data = torch.tensor(weights[node.input[2]].copy())
            layers.append(linear)
        elif node.op_type == "Relu":
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def digits_training_split() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    features, labels = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(
        (features / 16.0).astype("float32"), labels, test_size=0.2, random_state=0
    )
    return x_train, y_train


def breast_cancer_training_split() -> Any:
    """The raw features of the golden logistic regression's training split (the golden
    model standardizes them itself)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    features, _ = load_breast_cancer(return_X_y=True)
    x_train, _ = train_test_split(features, random_state=0)
    return x_train


def cml_torch_row(
    case: str,
    network: Any,
    rounding: int | None,
    calibration_set: str = TRAINING_SPLIT,
    samples: int = 0,
) -> Row:
    """Concrete ML's compile of a golden torch model: simulated accuracy and concrete's
    statistics; keygen and latency over `samples` encrypted runs on the training split's
    (none with `samples` 0: the CNN's take minutes each)."""
    import numpy as np
    from concrete.ml.torch.compile import compile_torch_model

    inputs, labels, _ = golden(case)
    (x_test,) = inputs.values()
    calibration = calibration_sets(case)[calibration_set]
    module, compile_seconds = timed(
        lambda: compile_torch_model(
            network, calibration, n_bits=BITS, rounding_threshold_bits=rounding
        )
    )
    print(f"  Concrete ML {case} compiled in {compile_seconds:.1f} s", file=sys.stderr, flush=True)
    simulated, _ = timed(lambda: module.forward(x_test, fhe="simulate").argmax(1), "simulate")
    circuit = module.fhe_circuit
    row: Row = {
        "model": case,
        "compiler": f"Concrete ML (torch, {BITS} bits"
        + (f", rounding {rounding} bits)" if rounding else ")"),
        "calibration": calibration_set,
        "accuracy": float(np.mean(simulated == labels)),
        **concrete_statistics(circuit),
        "compile_s": compile_seconds,
    }
    if samples and calibration_set == TRAINING_SPLIT:
        _, keygen_seconds = timed(lambda: circuit.keygen(force=True), "keygen")
        executed, execute_seconds = timed(
            lambda: [module.forward(x_test[i : i + 1], fhe="execute") for i in range(samples)],
            "execute",
        )
        agrees = [int(e.argmax() == s) for e, s in zip(executed, simulated, strict=False)]
        row.update(
            execute_agrees=sum(agrees),
            keygen_s=keygen_seconds,
            latency_s=execute_seconds / samples,
            samples=samples,
        )
    return row


def concrete_statistics(circuit: Any) -> Row:
    """Concrete's statistics of a Concrete ML circuit, as the table reads them."""
    return {
        "lookups": circuit.statistics["programmable_bootstrap_count"],
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "complexity": circuit.statistics.get("complexity"),
    }


def digits_cnn_torch_model() -> Any:
    """The golden CNN's weights as torch.nn: Conv 3x3 + BatchNorm + ReLU + AvgPool 2 +
    Flatten + Linear (examples/trained_models.py's DigitsCnn)."""
    import onnx
    import torch
    from onnx import numpy_helper

    proto = onnx.load(GOLDEN / "cnn_digits" / "model.onnx")
    weights = {
        init.name: torch.tensor(numpy_helper.to_array(init).copy())
        for init in proto.graph.initializer
    }
    conv, norm = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
    linear = torch.nn.Linear(64, 10)
    conv.weight.data, conv.bias.data = weights["features.0.weight"], weights["features.0.bias"]
    norm.weight.data, norm.bias.data = weights["features.1.weight"], weights["features.1.bias"]
    norm.running_mean.data = weights["features.1.running_mean"]
    norm.running_var.data = weights["features.1.running_var"]
    linear.weight.data = weights["classifier.weight"]
    linear.bias.data = weights["classifier.bias"]
    layers = [conv, norm, torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.Flatten(), linear]
    return torch.nn.Sequential(*layers).eval()


def cml_logreg_row(samples: int) -> Row:
    import numpy as np
    from concrete.ml.sklearn import LogisticRegression
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    features, targets = load_breast_cancer(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(features, targets, random_state=0)
    assert (x_train == breast_cancer_training_split()).all()
    scaler = StandardScaler().fit(x_train.astype("float32"))
    inputs, labels, _ = golden("logreg_breast_cancer")
    (x_test,) = inputs.values()
    x_train = scaler.transform(x_train.astype("float32"))
    x_test = scaler.transform(x_test)
    model = LogisticRegression(n_bits=BITS, max_iter=1000).fit(x_train, y_train)
    _, compile_seconds = timed(lambda: model.compile(x_train))
    simulated = model.predict(x_test, fhe="simulate")
    circuit = model.fhe_circuit
    _, keygen_seconds = timed(lambda: circuit.keygen(force=True))
    executed, execute_seconds = timed(
        lambda: [model.predict(x_test[i : i + 1], fhe="execute")[0] for i in range(samples)]
    )
    return {
        "model": "logreg_breast_cancer",
        "compiler": f"Concrete ML (sklearn, {BITS} bits)",
        "calibration": TRAINING_SPLIT,
        "accuracy": float(np.mean(simulated == labels)),
        "execute_agrees": int(np.sum(np.array(executed) == simulated[:samples])),
        **concrete_statistics(circuit),
        "compile_s": compile_seconds,
        "keygen_s": keygen_seconds,
        "latency_s": execute_seconds / samples,
        "samples": samples,
    }


def concrete_ml_part(samples: int, rounding: bool, unrounded: bool, cnn: bool) -> None:
    """One JSON line per row on stdout, as each is measured (a failure keeps the rest)."""
    import warnings

    warnings.filterwarnings("ignore")
    install_shims()
    import concrete.ml

    measures: list[Callable[[], Row]] = []
    if cnn:
        measures = [
            lambda c=name: cml_torch_row("cnn_digits", digits_cnn_torch_model(), BITS, c)
            for name in calibration_sets("cnn_digits")
        ]
    elif unrounded:  # Concrete ML's default: 14-bit lookups, minutes per sample on one core
        measures.append(
            lambda: cml_torch_row("mlp_digits", digits_torch_model(), None, samples=samples)
        )
    if rounding and not cnn:
        for calibration_set in calibration_sets("mlp_digits"):
            measures.append(
                lambda c=calibration_set: cml_torch_row(
                    "mlp_digits", digits_torch_model(), BITS, c, samples
                )
            )
    if not cnn:
        measures.append(lambda: cml_logreg_row(samples))
    for measure in measures:
        row = measure()
        row["version"] = concrete.ml.__version__
        print(json.dumps(row), flush=True)


def run_concrete_ml(samples: int, rounding: bool, unrounded: bool, cnn: bool) -> list[Row]:
    if not CML_PYTHON.is_file():
        sys.exit(f"no Concrete ML venv at {CML_PYTHON}: run benchmarks/concrete_ml_env.sh first")
    command = [str(CML_PYTHON), __file__, "--concrete-ml-part", "--samples", str(samples)]
    if rounding:
        command.append("--rounding")
    if not unrounded:
        command.append("--no-unrounded")
    if cnn:
        command.append("--cnn")
    # stdout: the rows; stderr (progress, failures) goes straight to ours
    done = subprocess.run(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, **SINGLE_THREAD}, check=False
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        print(f"the Concrete ML half failed (exit {done.returncode})", file=sys.stderr)
    return rows


# -- the tables ----------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    """The compiles calibrated on the training split: accuracy, lookups, cost, latency."""
    header = (
        "| model | compiler | accuracy (simulate) | accuracy (clear) | PBS | max width "
        "| complexity | keygen s | latency s/sample | latency fhec / Concrete ML |"
    )
    lines = [header, "|" + " --- |" * 10]
    for row in rows:
        if "latency_s" not in row:
            continue
        ratio = row.get("ratio")
        clear = row.get("clear_accuracy")
        lines.append(
            f"| {row['model']} | {row['compiler']} | {row['accuracy']:.4f} "
            f"| {'' if clear is None else f'{clear:.4f}'} | {row['lookups']} "
            f"| {row['max_bit_width']} | {_complexity(row)} | {row['keygen_s']:.2f} "
            f"| {row['latency_s']:.3f} "
            f"| {'' if ratio is None else f'{ratio:.3f}'} |"
        )
    return "\n".join(lines)


def calibration_table(rows: list[Row], labels: int) -> str:
    """The MLP's held-out samples right, per calibration set given to both compilers:
    Concrete ML's (deterministic) and the mean of fhec's default's simulations."""
    lines = [
        "| calibration | Concrete ML | fhec (mean) | fhec - Concrete ML | fhec simulations "
        "| fhec (clear) | fhec complexity / Concrete ML's |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    theirs_all, ours_all = [], []
    for name in calibration_sets("mlp_digits"):
        theirs = _row(rows, "Concrete ML (torch, 6 bits, rounding", name)
        ours = _row(rows, FHEC_DEFAULT, name)
        if theirs is None or ours is None:
            continue
        theirs_all.append(theirs["accuracy"] * labels)
        ours_all.append(ours["accuracy"] * labels)
        lines.append(
            f"| {name} | {theirs_all[-1]:.0f} | {ours_all[-1]:.1f} "
            f"| {ours_all[-1] - theirs_all[-1]:+.1f} "
            f"| {', '.join(map(str, ours['accuracy_draws']))} "
            f"| {ours['clear_accuracy'] * labels:.0f} "
            f"| {ours['complexity'] / theirs['complexity']:.3f} |"
        )
    if theirs_all:
        mean_theirs, mean_ours = sum(theirs_all) / len(theirs_all), sum(ours_all) / len(ours_all)
        ahead = sum(o > t for o, t in zip(ours_all, theirs_all, strict=True))
        lines.append(
            f"| mean ({len(ours_all)} sets) | {mean_theirs:.2f} | {mean_ours:.2f} "
            f"| {mean_ours - mean_theirs:+.2f} (fhec ahead on {ahead}) | | | |"
        )
    return "\n".join(lines)


def cnn_table(rows: list[Row]) -> str:
    """The CNN, per calibration set given to both: accuracy and concrete's statistics."""
    lines = [
        "| calibration | compiler | accuracy (simulate) | accuracy (clear) | PBS | max width "
        "| complexity | complexity fhec / Concrete ML |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in calibration_sets("cnn_digits"):
        theirs = _row(rows, "Concrete ML", name)
        for row in (theirs, _row(rows, FHEC_DEFAULT, name)):
            if row is None:
                continue
            clear = row.get("clear_accuracy")
            mine = theirs is not None and row is not theirs
            ratio = row["complexity"] / theirs["complexity"] if mine else None
            lines.append(
                f"| {name} | {row['compiler']} | {row['accuracy']:.4f} "
                f"| {'' if clear is None else f'{clear:.4f}'} | {row['lookups']} "
                f"| {row['max_bit_width']} | {_complexity(row)} "
                f"| {'' if ratio is None else f'{ratio:.3f}'} |"
            )
    return "\n".join(lines)


def _row(rows: list[Row], compiler: str, calibration: str) -> Row | None:
    for row in rows:
        if row["compiler"].startswith(compiler) and row.get("calibration") == calibration:
            return row
    return None


def _complexity(row: Row) -> str:
    """Concrete's cost-model estimate of one run (load-independent, unlike latency)."""
    value = row.get("complexity")
    return "" if value is None else f"{value:.3g}"


def add_ratios(rows: list[Row]) -> None:
    """fhec's latency over the Concrete ML rows' (all of them in `ratios`)."""
    timed_rows = [row for row in rows if "latency_s" in row]
    for row in timed_rows:
        if not row["compiler"].startswith("fhec"):
            continue
        theirs = [
            r
            for r in timed_rows
            if r["model"] == row["model"] and r["compiler"].startswith("Concrete")
        ]
        # the first Concrete ML row: its default if measured, else its rounded compile
        row["ratio"] = row["latency_s"] / theirs[0]["latency_s"] if theirs else None
        row["ratios"] = {r["compiler"]: row["latency_s"] / r["latency_s"] for r in theirs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2, help="encrypted samples per model")
    parser.add_argument("--rounding", action="store_true", help="also Concrete ML with rounding")
    parser.add_argument(
        "--no-unrounded",
        action="store_true",
        help="skip Concrete ML's default (unrounded, 14-bit lookups: minutes per sample)",
    )
    parser.add_argument(
        "--cnn",
        action="store_true",
        help="instead: the golden CNN, accuracy and concrete's statistics (no encrypted run)",
    )
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--concrete-ml-part", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.update(SINGLE_THREAD)
    single_core()
    if args.concrete_ml_part:
        concrete_ml_part(args.samples, args.rounding, not args.no_unrounded, args.cnn)
        return 0
    theirs = run_concrete_ml(args.samples, args.rounding, not args.no_unrounded, args.cnn)
    if args.cnn:
        sets = calibration_sets("cnn_digits")
        ours = [fhec_row("cnn_digits", 0, FHEC_DEFAULT, name, encrypted=False) for name in sets]
        print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(cnn_table(theirs + ours))
        if args.json:
            args.json.write_text(json.dumps(theirs + ours, indent=2))
        return 0
    ours = [fhec_row("mlp_digits", args.samples, compiler) for compiler in FHEC_CONFIGS]
    others = list(calibration_sets("mlp_digits"))[1:]
    ours += [fhec_row("mlp_digits", args.samples, FHEC_DEFAULT, name) for name in others]
    ours.append(fhec_row("logreg_breast_cancer", args.samples, FHEC_DEFAULT))
    rows = sorted(ours + theirs, key=lambda r: (r["model"] != "mlp_digits", r["compiler"]))
    add_ratios(rows)
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(table(rows))
    print()
    print(calibration_table(rows, len(golden("mlp_digits")[1])))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
