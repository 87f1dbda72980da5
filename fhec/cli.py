"""The `fhec` command: compile, run, inspect, demo, train.

A user's mistake (a bad file, option or input) is one `error: ...` line on stderr and
exit code 2, never a traceback; a bug in fhec itself still shows its traceback (exit 1).
Heavy modules (onnx, onnxruntime, the FHE libraries) load inside the command that
needs them, so `fhec --help` and `fhec --version` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from fhec import __version__
from fhec.api import BACKENDS, MODES
from fhec.ir.errors import FhecError

if TYPE_CHECKING:
    import numpy as np

    from fhec.api import CompiledModel
    from fhec.ir.graph import Module

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# Constants over this many bytes print as "..." in `fhec inspect` unless --full is given.
ELIDE_CONSTANTS_OVER = 64
ZIP_MAGIC = b"PK\x03\x04"
# Training-data files carry the targets as "label"; `compile` and `run` skip that key
# when the model has no input of that name.
LABEL_KEY = "label"


class UsageError(FhecError):
    """Arguments argparse could not make sense of."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one `error:` line through `main` (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


# argparse's subparser container is generic only to type checkers.
Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except FhecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`fhec inspect m.onnx | head`): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fhec",
        description="Compile ONNX models to fully homomorphic encryption circuits and run them.",
    )
    parser.add_argument("--version", action="version", version=f"fhec {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_compile(commands)
    _add_run(commands)
    _add_inspect(commands)
    _add_demo(commands)
    from fhec.cli_train import add_train  # after this module: it imports from it

    add_train(commands)
    return parser


# -- argument types (their errors become argparse's, hence one `error:` line) -----------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=1x3x8x8` -> ("NAME", (1, 3, 8, 8))."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected NAME=DIMS with positive dimensions joined by 'x' "
            f"(e.g. input=1x3x8x8), got {text!r}"
        )
    return name, shape


def pass_option(text: str) -> tuple[str, str, str]:
    """`quantize-tfhe.bits=5` -> ("quantize-tfhe", "bits", "5")."""
    target, sep, value = text.partition("=")
    pass_name, dot, option = target.rpartition(".")
    if not sep or not dot or not pass_name or not option or not value:
        raise argparse.ArgumentTypeError(
            f"expected PASS.OPTION=VALUE (e.g. quantize-tfhe.bits=5), got {text!r}"
        )
    return pass_name, option, value


def _options_by_pass(triples: list[tuple[str, str, str]] | None) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for pass_name, option, value in triples or []:
        if option in options.setdefault(pass_name, {}):
            raise UsageError(
                f"--option sets {pass_name}.{option} twice", hint="give each option once"
            )
        options[pass_name][option] = value
    return options


def _shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option",
        type=pass_option,
        action="append",
        metavar="PASS.OPTION=VALUE",
        help="set an option of a pass in the backend's pipeline, e.g. quantize-tfhe.bits=5, "
        "or of the backend itself, e.g. tfhe.p_error=1e-9 (repeat for several)",
    )
    parser.add_argument(
        "--calibration",
        metavar="DATA.npz",
        help="samples keyed by input name (batch axis first): sets the value ranges",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="samples per compiled run (default 1); `run` takes any number",
    )
    parser.add_argument(
        "--input-shape",
        type=input_shape,
        action="append",
        metavar="NAME=DIMS",
        help="full shape of an input whose dimensions are symbolic, e.g. input=1x3x8x8 "
        "(repeat for several inputs)",
    )


# -- fhec compile -----------------------------------------------------------------------


def _add_compile(commands: Commands) -> None:
    parser = commands.add_parser(
        "compile",
        help="compile an ONNX model into an artifact",
        description="Compile an ONNX model and write the artifact (default: MODEL.fhec).",
    )
    parser.add_argument("model", metavar="MODEL.onnx")
    parser.add_argument("--backend", choices=BACKENDS, default="reference")
    parser.add_argument("-o", "--output", metavar="OUT", help="artifact path")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    _shape_options(parser)
    parser.set_defaults(command=compile_command)


def compile_command(args: argparse.Namespace) -> int:
    from fhec import api

    model_path = Path(args.model)
    _reject_artifact_as_model(model_path)
    output = Path(args.output) if args.output else model_path.with_suffix(".fhec")
    if output.resolve() == model_path.resolve():
        raise UsageError(f"the output '{output}' would overwrite the model", hint="pass -o OUT")
    calibration = None
    if args.calibration:
        calibration = _read_calibration(args.calibration, model_path)
    model = api.compile(
        model_path,
        args.backend,
        calibration=calibration,
        input_shapes=_shapes_by_name(args.input_shape),
        batch_size=args.batch_size,
        options=_options_by_pass(args.option),
    )
    if calibration is not None and args.backend in CLEAR_ACCURACY_BACKENDS:
        _report_clear_accuracy(model, calibration, args.calibration)
    model.save(output)
    if args.json:
        from fhec.runtime.artifact import json_default

        report = {"artifact": str(output), **model.report}
        print(json.dumps(report, indent=2, default=json_default))
    else:
        print(f"wrote {output}")
        print(model.summary())
    return 0


# Backends whose compiled module the reference interpreter computes in clear (TFHE: the
# quantized integer model), for the report's accuracy on labelled calibration data.
CLEAR_ACCURACY_BACKENDS = ("reference", "tfhe")


def _report_clear_accuracy(
    model: CompiledModel, calibration: dict[str, np.ndarray], path: str
) -> None:
    """`calibration_accuracy_in_clear` when the calibration file has integer labels
    that are not a model input: the compiled (for TFHE, quantized) model's accuracy on
    those samples, computed in clear."""
    from fhec.ir.errors import InputError
    from fhec.runtime.npz import load_npz

    labels = load_npz(path, "calibration").get(LABEL_KEY)
    if labels is None or LABEL_KEY in calibration or labels.dtype.kind not in "iu":
        return
    try:
        accuracy: object = round(model.evaluate_accuracy(calibration, labels), 4)
    except InputError as exc:  # not a classifier: say why there is no accuracy
        accuracy = f"n/a ({exc.message})"
    model.report["calibration_accuracy_in_clear"] = accuracy


def _reject_artifact_as_model(path: Path) -> None:
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
                raise UsageError(
                    f"'{path}' is an fhec artifact (a zip file), not an ONNX model",
                    hint=f"run it with `fhec run {path} --input INPUTS.npz`",
                )


def _shapes_by_name(pairs: list[tuple[str, tuple[int, ...]]] | None) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in pairs or []:
        if name in shapes:
            raise UsageError(
                f"--input-shape gives the shape of {name!r} twice", hint="give each input once"
            )
        shapes[name] = shape
    return shapes


def _read_inputs(path: str, input_names: set[str]) -> dict[str, np.ndarray]:
    from fhec.runtime.npz import load_npz

    arrays = load_npz(path, "input")
    if LABEL_KEY not in input_names:
        arrays.pop(LABEL_KEY, None)
    return arrays


def _read_calibration(path: str, model_path: Path) -> dict[str, np.ndarray]:
    """Calibration arrays; the model is read for its input names only when the file
    holds a `label` array that may or may not be one of them."""
    from fhec.runtime.npz import load_npz

    arrays = load_npz(path, "calibration")
    if LABEL_KEY in arrays:
        from fhec.frontend import load_onnx

        names = {i.name for i in load_onnx(model_path).graph.input}
        if LABEL_KEY not in names:
            del arrays[LABEL_KEY]
    return arrays


# -- fhec run -------------------------------------------------------------------------


def _add_run(commands: Commands) -> None:
    parser = commands.add_parser(
        "run",
        help="run a compiled artifact on inputs from an .npz file",
        description="Run an artifact on INPUTS.npz (keyed by the ONNX input names).",
    )
    parser.add_argument("artifact", metavar="ARTIFACT")
    parser.add_argument("--input", required=True, metavar="INPUTS.npz")
    parser.add_argument("--output", metavar="OUT.npz", help="write the outputs here")
    parser.add_argument("--json", action="store_true", help="print the outputs as JSON lists")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="execute",
        help="simulate: the backend's simulation where it has one (TFHE)",
    )
    parser.set_defaults(command=run_command)


def run_command(args: argparse.Namespace) -> int:
    from fhec import api
    from fhec.runtime.npz import save_npz

    model = api.load(args.artifact)
    inputs = _read_inputs(args.input, {s.name for s in model.signature.inputs})
    outputs = model.run(inputs, mode=args.mode)
    if args.output:
        save_npz(args.output, outputs)
    if args.json:
        print(json.dumps({name: array.tolist() for name, array in outputs.items()}))
    elif args.output:
        print(f"wrote {args.output} ({', '.join(outputs)})")
    else:
        print(format_outputs(outputs))
    return 0


def format_outputs(outputs: Mapping[str, np.ndarray], shown: int = 6) -> str:
    """One line per output: shape, type, range and the first few values."""
    rows = [("output", "shape", "dtype", "min", "max", "first values")]
    for name, array in outputs.items():
        flat = array.ravel()
        first = " ".join(f"{v:.6g}" for v in flat[:shown].tolist())
        rows.append(
            (
                name,
                str(tuple(array.shape)),
                str(array.dtype),
                f"{flat.min():.6g}" if flat.size else "-",
                f"{flat.max():.6g}" if flat.size else "-",
                first + (" ..." if flat.size > shown else ""),
            )
        )
    return format_table(rows)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- fhec inspect ---------------------------------------------------------------------


def _add_inspect(commands: Commands) -> None:
    parser = commands.add_parser(
        "inspect",
        help="print the IR of a model (after a pass) or of an artifact",
        description="Print the IR: of an ONNX model after the backend's pipeline, or after "
        "one of its passes (--after), or of a compiled artifact.",
    )
    parser.add_argument("target", metavar="MODEL.onnx|ARTIFACT")
    parser.add_argument(
        "--after", metavar="PASS", help="stop after this pass (NAME#2 for its second run)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="whose pipeline to run (default: reference)",
    )
    parser.add_argument(
        "--full", action="store_true", help="print large constants in full (parseable IR)"
    )
    _shape_options(parser)
    parser.set_defaults(command=inspect_command)


def inspect_command(args: argparse.Namespace) -> int:
    from fhec.ir.printer import print_module

    target = Path(args.target)
    is_artifact = _is_artifact(target)
    module = _artifact_module(target, args) if is_artifact else _model_module(target, args)
    elide = None if args.full else ELIDE_CONSTANTS_OVER
    sys.stdout.write(print_module(module, elide_constants_over=elide))
    return 0


def _is_artifact(path: Path) -> bool:
    if path.suffix in (".onnx", ".fhec"):
        return path.suffix == ".fhec"
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def _artifact_module(path: Path, args: argparse.Namespace) -> Module:
    from fhec import api

    model_only = [
        flag
        for flag, value in (
            ("--after", args.after),
            ("--calibration", args.calibration),
            ("--batch-size", args.batch_size),
            ("--input-shape", args.input_shape),
        )
        if value
    ]
    if model_only:
        raise UsageError(
            f"{model_only[0]} applies to ONNX models; an artifact holds the IR after its "
            "whole pipeline",
            hint="inspect the .onnx model instead",
        )
    model = api.load(path)
    if args.backend is not None and args.backend != model.backend:
        raise UsageError(
            f"'{path}' was compiled for backend {model.backend!r}, not {args.backend!r}",
            hint="leave out --backend, or inspect the .onnx model",
        )
    return model.module


def _model_module(path: Path, args: argparse.Namespace) -> Module:
    from fhec import api

    calibration = _read_calibration(args.calibration, path) if args.calibration else None
    return api.lower(
        path,
        args.backend or "reference",
        after=args.after,
        calibration=calibration,
        input_shapes=_shapes_by_name(args.input_shape),
        batch_size=args.batch_size,
        options=_options_by_pass(args.option),
    )


# -- fhec demo ------------------------------------------------------------------------


def _add_demo(commands: Commands) -> None:
    parser = commands.add_parser(
        "demo",
        help="compile the bundled digits model and run it on every backend",
        description="Compile the digits classifier shipped with fhec and run it on every "
        "backend: agreement with onnxruntime, accuracy on the bundled test data, time.",
    )
    parser.add_argument("--model", metavar="MODEL.onnx", help="another model (for tests)")
    parser.add_argument(
        "--data", metavar="DATA.npz", help="test data: the model's inputs and 'label'"
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="use only the first N test samples"
    )
    parser.set_defaults(command=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from fhec.demo import demo_table, run_demo

    if (args.model is None) != (args.data is None):
        raise UsageError("--model and --data go together", hint="give both or neither")
    result = run_demo(args.model, args.data, limit=args.limit)
    print(demo_table(result))
    return 0
