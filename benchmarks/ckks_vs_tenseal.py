"""fhec's CKKS backend against the same models written by hand with TenSEAL, in one run.

    .venv/bin/python benchmarks/ckks_vs_tenseal.py [--tenseal-samples N] [--relu-degree 3]
        [--encrypted-sigmoid] [--layouts batch,single] [--single-samples 20] [--json out.json]

(RESULTS.md: `--tenseal-samples 60`; TenSEAL's MLP takes seconds per sample.)
    .venv/bin/python benchmarks/ckks_vs_tenseal.py --layouts single --single-samples 20
(the single-sample layout's rows against TenSEAL, without the batch layout's.)
    .venv/bin/python benchmarks/ckks_vs_tenseal.py --models cnn_digits --layouts single \
        --single-samples 20 --tenseal-samples 20
(the CNN's single-sample rows alone.)

Models: the golden logistic regression on breast cancer, the golden MLP 64-32-16-10
and the golden CNN (conv 3x3 pad 1, 4 channels, + BatchNorm -> ReLU -> avg pool 2 ->
dense 10) on digits (tests/golden: model.onnx, inputs.npz, calibration.npz); --models
picks. fhec compiles each with backend="ckks" twice: the default waterline rescaling and
`options={"insert-rescale-ckks": {"policy": "always"}}`.

TenSEAL 0.3.x, in the style of its tutorials: one `ts.ckks_vector` per sample,
`CKKSVector.mm` with the plaintext weight matrix (rotations, so Galois keys), `+ bias`,
and `polyval` with a least-squares polynomial of --relu-degree for each ReLU, fitted on
the range the calibration samples reach at that layer (the tutorials' square / low-degree
activation). Weights come from the ONNX file (numpy_helper for the MLP's initializers;
the logistic regression's Scaler and LinearClassifier attributes, the scaler folded into
the weights). The logistic regression's final sigmoid runs on the client after
decryption, as fhec's split-epilogue-ckks does; with --encrypted-sigmoid a second
TenSEAL row evaluates it encrypted with the tutorial's degree-3 sigmoid polynomial. Parameters:
the tutorials' 128-bit kind (N=8192 or 16384, 60-bit outer primes, 40-bit scale and
inner primes), with the fewest inner primes that decrypt correctly (levels used).
The CNN follows TenSEAL's convolution tutorial (one image per vector): the client pads
the image with zeros (`ts.im2col_encoding` has no padding) and encodes it im2col,
`conv2d_im2col` per output channel (BatchNorm folded into its kernel and bias), then
`CKKSVector.pack_vectors`, `polyval` for the ReLU and ONE `mm` by the average pool and
dense layer folded into a 256 x 10 matrix in the clear (what fhec's single layout
derives; the tutorial's model has no pooling to write).

TenSEAL needs its own venv (benchmarks/tenseal_env.sh builds build/tenseal-venv): its
half runs as a child process of this script (`--tenseal-part`) that reads the weights
and inputs from an .npz in a temporary directory and writes JSON. Every process is
pinned to one core and one thread. Latency: keygen apart; single = one sample's
encrypt + evaluate + decrypt; batched = all held-out samples (fhec packs them into the
slots of one run; TenSEAL encrypts one vector per sample), per sample.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import SINGLE_THREAD, machine, single_core, timed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
TENSEAL_PYTHON = ROOT / "build" / "tenseal-venv" / "bin" / "python"
CASES = ("logreg_breast_cancer", "mlp_digits", "cnn_digits")
FHEC_CONFIGS: dict[str, dict[str, dict[str, object]]] = {
    "fhec (waterline)": {},
    "fhec (always-rescale)": {"insert-rescale-ckks": {"policy": "always"}},
}
# The single-sample layout (pack-slots-ckks{layout=single}: one ciphertext per sample,
# Halevi-Shoup diagonal mat-vecs), compiled for batch_size=1: its "batched" column is
# --single-samples runs of one sample each, per sample (the diagonals encoded once).
FHEC_SINGLE_CONFIGS: dict[str, dict[str, dict[str, object]]] = {
    "fhec single (waterline)": {"pack-slots-ckks": {"layout": "single"}},
    "fhec single (ReLU degree <= 7)": {
        "pack-slots-ckks": {"layout": "single"},
        "approximate-activations": {"max_degree": 7},
    },
    # TenSEAL's own degree (3), fitted minimax (Remez) rather than interpolated.
    "fhec single (ReLU degree <= 3, Remez)": {
        "pack-slots-ckks": {"layout": "single"},
        "approximate-activations": {"max_degree": 3, "fit": "remez"},
    },
}
# The logistic-regression tutorial's sigmoid approximation on [-5, 5] (degree 3).
TUTORIAL_SIGMOID = (0.5, 0.197, 0.0, -0.004)
Row = dict[str, Any]




def golden(case: str) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    import numpy as np

    with np.load(GOLDEN / case / "inputs.npz") as data:
        inputs = {key: data[key] for key in data.files}
    labels = inputs.pop("label")
    with np.load(GOLDEN / case / "calibration.npz") as data:
        calibration = {key: data[key] for key in data.files}
    return inputs, labels, calibration


def score_output(case: str) -> str:
    return "output_probability" if case == "logreg_breast_cancer" else "logits"


def plaintext(case: str, inputs: dict[str, Any]) -> Any:
    """The original graph's float outputs (fhec's reference interpreter, which matches
    onnxruntime at rtol 1e-4 in the golden tests)."""
    import fhec

    model = fhec.compile(
        GOLDEN / case / "model.onnx", backend="reference", pipeline=["infer-shapes"]
    )
    return model.run(inputs)[score_output(case)]


# -- fhec ------------------------------------------------------------------------------
def fhec_row(case: str, compiler: str) -> Row:
    """The batch layout: every held-out sample in the slots of one run."""
    return _fhec_measured(case, compiler, FHEC_CONFIGS[compiler], single=False, samples=None)


def fhec_single_row(case: str, compiler: str, samples: int) -> Row:
    """The single-sample layout, compiled for batch_size=1: `samples` runs of one sample."""
    return _fhec_measured(case, compiler, FHEC_SINGLE_CONFIGS[compiler], single=True,
                          samples=samples)


def _fhec_measured(case: str, compiler: str, options: dict[str, dict[str, object]], *,
                   single: bool, samples: int | None) -> Row:
    import numpy as np

    import fhec

    inputs, labels, calibration = golden(case)
    count = len(labels) if samples is None else min(samples, len(labels))
    inputs, labels = {key: value[:count] for key, value in inputs.items()}, labels[:count]
    expected = plaintext(case, inputs)
    model, compile_s = timed(
        lambda: fhec.compile(
            GOLDEN / case / "model.onnx",
            backend="ckks",
            calibration=calibration,
            options=options,
            **({"batch_size": 1} if single else {}),
        )
    )
    assert model.circuit is not None
    _, keygen_s = timed(model.circuit.keys)
    one = {key: value[:1] for key, value in inputs.items()}
    _, single_s = timed(lambda: model.run(one))  # single layout: the diagonals encoded here
    outputs, batch_s = timed(lambda: model.run(inputs))  # single layout: a run per sample
    scores = outputs[score_output(case)]
    report = model.report
    keys = report["key_bytes"]
    bound = report["error_bound"]
    assert isinstance(keys, dict) and isinstance(bound, dict)
    assert report["layout"] == ("single" if single else "batch")
    return {
        "model": case,
        "compiler": compiler,
        "n": report["poly_degree"],
        "coeff_bits": report["coeff_modulus_bits"],
        "levels_used": report["levels_used"],
        "key_bytes": keys["public"] + keys["relinearization"],
        "galois_bytes": keys["galois"],
        "galois_keys": report["galois_keys"],
        "key_note": "uncompressed",
        "compile_s": compile_s,
        "keygen_s": keygen_s,
        "single_s": single_s,
        "batch_s_per_sample": batch_s / count,
        "samples": count,
        "max_error": float(np.max(np.abs(scores - expected))),
        "bound": float(bound[score_output(case)]),
        "accuracy": float(np.mean(scores.argmax(axis=-1) == labels)),
    }


# -- what TenSEAL's half gets: weights from the ONNX file -----------------------------
def logreg_weights() -> dict[str, Any]:
    """Scaler then LinearClassifier, the scaler folded in: scores = x @ w + b."""
    import numpy as np
    import onnx
    from onnx import helper

    proto = onnx.load(GOLDEN / "logreg_breast_cancer" / "model.onnx")
    attrs = {
        node.op_type: {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for node in proto.graph.node
    }
    offset = np.array(attrs["Scaler"]["offset"], dtype=np.float64)
    scale = np.array(attrs["Scaler"]["scale"], dtype=np.float64)
    linear = attrs["LinearClassifier"]
    assert linear["post_transform"] == b"LOGISTIC"
    classes = len(linear["classlabels_ints"])
    coefficients = np.array(linear["coefficients"], dtype=np.float64).reshape(classes, -1).T
    weight = scale[:, None] * coefficients  # (x - offset) * scale @ c = x @ (scale c) - ...
    bias = np.array(linear["intercepts"], dtype=np.float64) - (offset * scale) @ coefficients
    return {"w0": weight, "b0": bias}


def mlp_weights(calibration: Any, degree: int) -> dict[str, Any]:
    """The Gemm initializers as (in, out) matrices, and for each ReLU a least-squares
    polynomial (numpy order, lowest first) on the calibrated range of its input."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(GOLDEN / "mlp_digits" / "model.onnx")
    init = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in proto.graph.initializer}
    weights: dict[str, Any] = {}
    activations = np.asarray(calibration, dtype=np.float64)
    gemms = [node for node in proto.graph.node if node.op_type == "Gemm"]
    for index, node in enumerate(gemms):
        transposed = any(a.name == "transB" and a.i == 1 for a in node.attribute)
        weight = init[node.input[1]].T if transposed else init[node.input[1]]
        weights[f"w{index}"], weights[f"b{index}"] = weight, init[node.input[2]]
        activations = activations @ weight + init[node.input[2]]
        if index < len(gemms) - 1:
            lo, hi = float(activations.min()), float(activations.max())
            grid = np.linspace(lo, hi, 2001)
            weights[f"relu{index}"] = np.polynomial.polynomial.polyfit(  # type: ignore[no-untyped-call]
                grid, np.maximum(grid, 0), degree
            )
            activations = np.maximum(activations, 0)
    return weights


def cnn_weights(calibration: Any, degree: int) -> dict[str, Any]:
    """The conv's kernels and bias with the BatchNorm folded in, a least-squares ReLU
    polynomial on the calibrated range of the conv's outputs, and the average pool and
    flatten folded into the dense layer's (in, out) matrix: 256 x 10."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(GOLDEN / "cnn_digits" / "model.onnx")
    init = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in proto.graph.initializer}
    (norm,) = [node for node in proto.graph.node if node.op_type == "BatchNormalization"]
    epsilon = next(a.f for a in norm.attribute if a.name == "epsilon")
    gamma, beta, mean, var = (init[name] for name in norm.input[1:])
    factor = gamma / np.sqrt(var + epsilon)
    kernels = init["features.0.weight"][:, 0] * factor[:, None, None]  # (4, 3, 3)
    bias = (init["features.0.bias"] - mean) * factor + beta
    conv = cnn_conv(kernels, bias, np.asarray(calibration, dtype=np.float64))
    grid = np.linspace(float(conv.min()), float(conv.max()), 2001)
    relu = np.polynomial.polynomial.polyfit(grid, np.maximum(grid, 0), degree)  # type: ignore[no-untyped-call]
    channels, side = conv.shape[1], conv.shape[2]
    pool = np.zeros((channels, side, side, channels, side // 2, side // 2))
    for channel in range(channels):
        for row in range(side):
            for col in range(side):
                pool[channel, row, col, channel, row // 2, col // 2] = 0.25
    dense = pool.reshape(channels * side * side, -1) @ init["classifier.weight"].T
    return {"conv_w": kernels, "conv_b": bias, "relu0": relu, "w0": dense,
            "b0": init["classifier.bias"]}


def cnn_conv(kernels: Any, bias: Any, images: Any) -> Any:
    """(N, 1, H, W) images -> (N, C, H, W): the 3x3 convolution with zero padding 1."""
    import numpy as np

    side = images.shape[-1]
    padded = np.pad(images[:, 0], ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((len(images), len(kernels), side, side))
    for i in range(3):
        for j in range(3):
            out += kernels[None, :, i, j, None, None] * padded[:, None, i : i + side, j : j + side]
    return out + bias[None, :, None, None]


def clear_forward(weights: dict[str, Any], inputs: Any) -> Any:
    """The TenSEAL model in the clear: its ReLU polynomials, no encryption noise."""
    import numpy as np

    if "conv_w" in weights:  # the CNN: conv, ReLU polynomial, then the folded dense layer
        conv = cnn_conv(weights["conv_w"], weights["conv_b"], np.asarray(inputs, np.float64))
        hidden = np.polynomial.polynomial.polyval(conv, weights["relu0"])  # type: ignore[no-untyped-call]
        return hidden.reshape(len(conv), -1) @ weights["w0"] + weights["b0"]
    values = np.asarray(inputs, dtype=np.float64)
    index = 0
    while f"w{index}" in weights:
        values = values @ weights[f"w{index}"] + weights[f"b{index}"]
        if f"relu{index}" in weights:
            values = np.polynomial.polynomial.polyval(values, weights[f"relu{index}"])  # type: ignore[no-untyped-call]
        index += 1
    return values


# -- TenSEAL (run in its own venv) ----------------------------------------------------
def tenseal_context(ts: Any, levels: int) -> Any:
    """The tutorials' kind: 60-bit outer primes, 40-bit scale; the smallest N whose
    128-bit bound (log Q <= 218 / 438) holds the chain."""
    bits = [60] + [40] * levels + [60]
    n = 8192 if sum(bits) <= 218 else 16384 if sum(bits) <= 438 else 32768
    context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=n, coeff_mod_bit_sizes=bits)
    context.global_scale = 2**40
    context.generate_galois_keys()
    return context


def tenseal_forward(ts: Any, context: Any, weights: dict[str, Any], x: Any, sigmoid: bool) -> Any:
    import numpy as np

    if "conv_w" in weights:
        return tenseal_cnn_forward(ts, context, weights, x)
    vector = ts.ckks_vector(context, x.tolist())
    index = 0
    while f"w{index}" in weights:
        vector = vector.mm(weights[f"w{index}"].tolist()) + weights[f"b{index}"].tolist()
        if f"relu{index}" in weights:
            vector = vector.polyval(weights[f"relu{index}"].tolist())
        index += 1
    if sigmoid:
        vector = vector.polyval(list(TUTORIAL_SIGMOID))
    return np.array(vector.decrypt())


def tenseal_cnn_forward(ts: Any, context: Any, weights: dict[str, Any], x: Any) -> Any:
    """TenSEAL's convolution tutorial: im2col encoding of the (client-padded) image, one
    `conv2d_im2col` (+ bias) per channel, `pack_vectors`, the ReLU polynomial, `mm`."""
    import numpy as np

    padded = np.pad(x.reshape(x.shape[-2:]), 1)
    encoded, windows = ts.im2col_encoding(context, padded.tolist(), 3, 3, 1)
    channels = [
        encoded.conv2d_im2col(kernel.tolist(), windows) + float(bias)
        for kernel, bias in zip(weights["conv_w"], weights["conv_b"], strict=True)
    ]
    vector = ts.CKKSVector.pack_vectors(channels).polyval(weights["relu0"].tolist())
    vector = vector.mm(weights["w0"].tolist()) + weights["b0"].tolist()
    return np.array(vector.decrypt())


def key_bytes(context: Any) -> tuple[int, int]:
    """Public + relinearization keys, and Galois keys, as TenSEAL serializes them (SEAL's
    default zstd compression), the context's own bytes subtracted."""

    def size(public: bool, galois: bool) -> int:
        return len(
            context.serialize(
                save_public_key=public,
                save_secret_key=False,
                save_galois_keys=galois,
                save_relin_keys=public,
            )
        )

    base = size(False, False)
    return size(True, False) - base, size(False, True) - base


def tenseal_row(ts: Any, name: str, data: dict[str, Any], samples: int, sigmoid: bool) -> Row:
    import numpy as np

    weights = {
        key[len(name) + 1 :]: value
        for key, value in data.items()
        if key.startswith(name + ".") and not key.endswith((".x", ".expected", ".labels"))
    }
    x, expected, labels = data[name + ".x"], data[name + ".expected"], data[name + ".labels"]

    def finish(scores: Any) -> Any:
        """The client's epilogue: the logistic regression's sigmoid, unless encrypted."""
        if name != "logreg_breast_cancer" or sigmoid:
            return scores
        return 1 / (1 + np.exp(-scores))

    # the fewest levels whose first sample decrypts near the same polynomial model in the
    # clear (a chain too short raises, or decrypts garbage once the scale overflows).
    # Not closer than 10% of the output range: a second mm sums the padding slots the
    # first one leaves non-zero, about 0.4 on the MLP's logits whatever the chain.
    clear_scores = clear_forward(weights, x[:1])
    if sigmoid:
        clear_scores = np.polynomial.polynomial.polyval(clear_scores, TUTORIAL_SIGMOID)  # type: ignore[no-untyped-call]
    clear = finish(clear_scores)[0]
    for levels in range(1, 12):
        try:
            context = tenseal_context(ts, levels)
            out = finish(tenseal_forward(ts, context, weights, x[0], sigmoid))
        except (ValueError, RuntimeError):
            continue
        if np.max(np.abs(out - clear)) < 0.1 * (float(np.ptp(expected)) or 1.0):
            break
    else:
        raise RuntimeError(f"TenSEAL {name}: no chain of up to 11 levels decrypts correctly")
    keygen_start = time.perf_counter()
    context = tenseal_context(ts, levels)
    keygen_s = time.perf_counter() - keygen_start
    _, single_s = timed(lambda: finish(tenseal_forward(ts, context, weights, x[0], sigmoid)))
    # --tenseal-samples caps the MLP's and CNN's batched runs (seconds per sample); the
    # logistic regression runs all
    capped = samples > 0 and name != "logreg_breast_cancer"
    count = min(samples, len(x)) if capped else len(x)
    scores, batch_s = timed(
        lambda: np.array(
            [finish(tenseal_forward(ts, context, weights, x[i], sigmoid)) for i in range(count)]
        )
    )
    bits = [60] + [40] * levels + [60]
    return {
        "model": name,
        "compiler": "TenSEAL (tutorial, sigmoid deg-3 encrypted)"
        if sigmoid
        else "TenSEAL (tutorial)",
        "n": 8192 if sum(bits) <= 218 else 16384 if sum(bits) <= 438 else 32768,
        "coeff_bits": bits,
        "levels_used": levels,
        "key_bytes": key_bytes(context)[0],
        "galois_bytes": key_bytes(context)[1],
        "key_note": "zstd",
        "keygen_s": keygen_s,
        "single_s": single_s,
        "batch_s_per_sample": batch_s / count,
        "samples": count,
        "max_error": float(np.max(np.abs(scores - expected[:count]))),
        "bound": None,
        "accuracy": float(np.mean(scores.argmax(axis=-1) == labels[:count])),
        "version": ts.__version__,
    }


def tenseal_part(
    npz: Path, out: Path, samples: int, with_sigmoid: bool, models: tuple[str, ...]
) -> None:
    import numpy as np
    import tenseal as ts

    with np.load(npz) as archive:
        data = {key: archive[key] for key in archive.files}
    rows = []
    for name in models:
        rows.append(tenseal_row(ts, name, data, samples, sigmoid=False))
        print(f"  TenSEAL {name}: done", file=sys.stderr, flush=True)
        if name == "logreg_breast_cancer" and with_sigmoid:
            rows.append(tenseal_row(ts, name, data, samples, sigmoid=True))
        out.write_text(json.dumps(rows))


def run_tenseal(
    samples: int, degree: int, with_sigmoid: bool, models: tuple[str, ...]
) -> tuple[list[Row], dict[str, float]]:
    import numpy as np

    if not TENSEAL_PYTHON.is_file():
        sys.exit(f"no TenSEAL venv at {TENSEAL_PYTHON}: run benchmarks/tenseal_env.sh first")
    arrays: dict[str, Any] = {}
    clear_accuracy: dict[str, float] = {}
    for case in models:
        inputs, labels, calibration = golden(case)
        (x,) = inputs.values()
        (cal,) = calibration.values()
        weights = (
            mlp_weights(cal, degree) if case == "mlp_digits"
            else cnn_weights(cal, degree) if case == "cnn_digits"
            else logreg_weights()
        )  # fmt: skip
        if case != "logreg_breast_cancer":
            clear = clear_forward(weights, x)
            clear_accuracy[case] = float(np.mean(clear.argmax(axis=-1) == labels))
        for key, value in weights.items():
            arrays[f"{case}.{key}"] = value
        arrays[f"{case}.x"] = x.astype(np.float64)
        arrays[f"{case}.expected"] = plaintext(case, inputs).astype(np.float64)
        arrays[f"{case}.labels"] = labels
    with tempfile.TemporaryDirectory() as directory:
        npz, out = Path(directory) / "in.npz", Path(directory) / "out.json"
        np.savez(npz, **arrays)
        command = [
            str(TENSEAL_PYTHON),
            __file__,
            "--tenseal-part",
            str(npz),
            str(out),
            "--tenseal-samples",
            str(samples),
            "--models",
            ",".join(models),
        ]
        command += ["--encrypted-sigmoid"] if with_sigmoid else []
        done = subprocess.run(command, env={**os.environ, **SINGLE_THREAD}, check=False)
        if done.returncode != 0:
            print(f"the TenSEAL half failed (exit {done.returncode})", file=sys.stderr)
        rows = json.loads(out.read_text()) if out.is_file() else []
    return rows, clear_accuracy


# -- the table -----------------------------------------------------------------------
def add_ratios(rows: list[Row]) -> None:
    """On each fhec row: TenSEAL's (tutorial, same split) latency over fhec's."""
    for row in rows:
        theirs = [
            r for r in rows if r["model"] == row["model"] and r["compiler"] == "TenSEAL (tutorial)"
        ]
        if row["compiler"].startswith("fhec") and theirs:
            row["ratio_single"] = theirs[0]["single_s"] / row["single_s"]
            row["ratio_batch"] = theirs[0]["batch_s_per_sample"] / row["batch_s_per_sample"]


def table(rows: list[Row]) -> str:
    header = (
        "| model | compiler | N | levels used | public + relin keys MiB | Galois keys MiB "
        "| single s | batched s/sample "
        "| samples | max error | predicted bound | bound / error | accuracy "
        "| TenSEAL/fhec single | TenSEAL/fhec batched |"
    )
    lines = [header, "|" + " --- |" * 15]

    def number(value: float | None, form: str) -> str:
        return "" if value is None else format(value, form)

    for row in rows:
        bound = row["bound"]
        ratio = bound / row["max_error"] if bound is not None and row["max_error"] > 0 else None
        lines.append(
            f"| {row['model']} | {row['compiler']} | {row['n']} | {row['levels_used']} "
            f"| {row['key_bytes'] / 2**20:.1f} ({row['key_note']}) "
            f"| {row['galois_bytes'] / 2**20:.1f} "
            f"| {row['single_s']:.4f} | {row['batch_s_per_sample']:.5f} | {row['samples']} "
            f"| {row['max_error']:.3g} | {number(bound, '.3g')} | {number(ratio, '.1f')} "
            f"| {row['accuracy']:.4f} | {number(row.get('ratio_single'), '.1f')} "
            f"| {number(row.get('ratio_batch'), '.1f')} |"
        )
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--tenseal-samples",
        type=int,
        default=0,
        help="TenSEAL's batched samples per model (0: all held-out samples)",
    )
    parser.add_argument("--relu-degree", type=int, default=3, help="TenSEAL's ReLU polynomial")
    parser.add_argument(
        "--encrypted-sigmoid",
        action="store_true",
        help="also TenSEAL's logistic regression with the tutorial's sigmoid",
    )
    parser.add_argument(
        "--layouts",
        default="batch,single",
        help="fhec's layouts to run: batch, single or both (comma-separated)",
    )
    parser.add_argument(
        "--single-samples", type=int, default=20, help="samples of the single-layout rows"
    )
    parser.add_argument(
        "--models", default=",".join(CASES), help=f"golden models to run (of {', '.join(CASES)})"
    )
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--tenseal-part", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.update(SINGLE_THREAD)
    single_core()
    models = tuple(case for case in CASES if case in args.models.split(","))
    if args.tenseal_part:
        npz, out = args.tenseal_part
        tenseal_part(npz, out, args.tenseal_samples, args.encrypted_sigmoid, models)
        return 0
    theirs, clear = run_tenseal(
        args.tenseal_samples, args.relu_degree, args.encrypted_sigmoid, models
    )
    layouts = set(args.layouts.split(","))
    ours = [
        fhec_row(case, compiler)
        for case in models
        for compiler in FHEC_CONFIGS
        if "batch" in layouts
    ] + [
        fhec_single_row(case, compiler, args.single_samples)
        for case in models
        for compiler in FHEC_SINGLE_CONFIGS
        if "single" in layouts
    ]
    rows = sorted(ours + theirs, key=lambda r: (CASES.index(r["model"]), r["compiler"]))
    add_ratios(rows)
    print(f"{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(table(rows))
    print(
        f"TenSEAL MLP / CNN with degree-{args.relu_degree} ReLU polynomials, in the clear: "
        + ", ".join(f"{case} accuracy {accuracy:.4f}" for case, accuracy in clear.items())
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
