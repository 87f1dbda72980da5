"""`fhec train`: fine-tune weights of an ONNX model, in clear or encrypted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from fhec.cli import (
    LABEL_KEY,
    Commands,
    UsageError,
    _options_by_pass,
    _reject_artifact_as_model,
    pass_option,
    positive_int,
)
from fhec.training import DEFAULT_BATCH_SIZE, LOSSES, TRAINING_BACKENDS


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def momentum_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def add_train(commands: Commands) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune weights of an ONNX model with SGD and write the tuned model",
        description="Train the chosen initializers of MODEL.onnx with SGD on DATA.npz "
        "(the model's inputs plus 'label') and write the model with the trained weights.",
    )
    parser.add_argument("model", metavar="MODEL.onnx")
    parser.add_argument(
        "--data",
        required=True,
        metavar="DATA.npz",
        help="the model's inputs and 'label' (class indices for cross-entropy, targets "
        "shaped as the output otherwise)",
    )
    parser.add_argument(
        "--trainable",
        nargs="+",
        default=["last"],
        metavar="NAME",
        help="initializer names to train, or last (the default): the last Gemm's weights "
        "and bias",
    )
    parser.add_argument("--loss", required=True, choices=LOSSES)
    parser.add_argument("--lr", required=True, type=positive_float, help="learning rate")
    parser.add_argument(
        "--epochs", type=positive_int, default=1, metavar="E", help="passes over the data "
        "(default 1)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="B",
        help=f"samples per step (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--backend", choices=TRAINING_BACKENDS, default="reference")
    parser.add_argument(
        "--momentum", type=momentum_value, default=0.0, metavar="M",
        help="SGD momentum in [0, 1) (default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffling (default 0)")
    parser.add_argument(
        "--model-output", metavar="NAME", help="the output the loss reads (default: the first)"
    )
    parser.add_argument(
        "--show-loss", action="store_true",
        help="print the loss of every step (on ckks / tfhe the server computes it "
        "encrypted and the client decrypts it: a little more work per step)",
    )
    parser.add_argument(
        "--calibration", metavar="DATA.npz",
        help="training-like samples with 'label' whose ranges, along a rehearsal of the "
        "training in clear, set the approximations and parameters (required for ckks and "
        "tfhe; the server learns these ranges, so do not pass the private data)",
    )
    parser.add_argument(
        "--calibration-epochs", type=positive_int, default=1, metavar="E",
        help="passes of the rehearsal over the calibration data (default 1)",
    )
    parser.add_argument(
        "--steps-per-refresh", type=positive_int, default=1, metavar="K",
        help="ckks: steps the circuit takes between two refreshes of the encrypted weights "
        "by the client (deeper parameters for K > 1; train a multiple of K steps)",
    )
    parser.add_argument(
        "--option", type=pass_option, action="append", metavar="PASS.OPTION=VALUE",
        help="set an option of a pass of the backend's training pipeline, e.g. "
        "approximate-activations.max_degree=7 (repeat for several)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="TUNED.onnx")
    parser.set_defaults(command=train_command)


def train_command(args: argparse.Namespace) -> int:
    from fhec.runtime.npz import load_npz
    from fhec.training import compile_training

    model_path, output = Path(args.model), Path(args.output)
    _reject_artifact_as_model(model_path)
    if output.resolve() == model_path.resolve():
        raise UsageError(f"the output '{output}' would overwrite the model", hint="pass -o OUT")
    data = load_npz(args.data, "training data")
    if LABEL_KEY not in data:
        raise UsageError(
            f"training data '{args.data}' has no '{LABEL_KEY}' array",
            hint=f"save the targets as {LABEL_KEY}=... beside the model's inputs "
            f"(it holds: {', '.join(sorted(data)) or 'nothing'})",
        )
    calibration = None
    if args.calibration:
        calibration = load_npz(args.calibration, "calibration data")
    trainer = compile_training(
        model_path,
        loss=args.loss,
        lr=args.lr,
        trainable=args.trainable,
        momentum=args.momentum,
        batch_size=args.batch_size,
        backend=args.backend,
        output=args.model_output,
        calibration=calibration,
        calibration_epochs=args.calibration_epochs,
        report_loss=args.show_loss,
        options=_options_by_pass(args.option),
        steps_per_refresh=args.steps_per_refresh,
    )
    on_step = _print_loss if args.show_loss else None
    history = trainer.fit(data, args.epochs, seed=args.seed, progress=None, on_step=on_step)
    trainer.export(output)
    left_out = history.left_out_per_epoch
    print(
        f"wrote {output}: trained {', '.join(trainer.parameters)} for {history.epochs} "
        f"epoch(s), {history.steps} steps of {args.batch_size} samples"
        + (f" ({left_out} samples per epoch left out of a full batch)" if left_out else "")
    )
    if args.backend != "reference":
        print(_session_summary(trainer.report()))
    return 0


def _session_summary(report: Mapping[str, object]) -> str:
    """One line of what encrypted training cost."""
    keys = ("mode", "refreshes", "levels_per_refresh", "poly_degree", "galois_keys", "bits",
            "lookup_bits", "programmable_bootstrap_count", "seconds_per_step")
    parts = [f"{key} {report[key]}" for key in keys if report.get(key) is not None]
    traffic = report.get("traffic_bytes")
    if isinstance(traffic, Mapping):
        total = sum(int(v) for v in traffic.values())
        parts.append(f"traffic {total / 2**20:.1f} MiB")
    return "encrypted training: " + ", ".join(parts)


def _print_loss(step: int, loss: float | None) -> None:
    from tqdm import tqdm

    shown = "(not computed)" if loss is None else f"{loss:.6g}"
    tqdm.write(f"step {step}  loss {shown}", file=sys.stdout)  # keeps the bar intact
