"""Build the example models and the golden regression files (`make golden`).

    .venv/bin/python examples/build_models.py --out tests/golden

For each case, `<out>/<case>/` gets:
  model.onnx        the model
  inputs.npz        held-out samples keyed by input name (+ `label` for classifiers)
  calibration.npz   the samples given to `fhec.compile(calibration=...)`
  expected.npz      onnxruntime's outputs keyed by output name (ZipMap -> (N, classes))
  expected.ir       the IR after the common pipeline, big constants elided
and `<out>/README.md` lists the cases. `--tfhe` writes `<out>/<case>/expected.tfhe.ir`
(the IR after the tfhe pipeline at its default options) for the TFHE golden cases,
from their committed model.onnx and calibration.npz (no retraining); `--ckks` likewise
writes `expected.ckks.ir` (the IR after the ckks pipeline) for the CKKS golden cases.
The demo files fhec/data/demo_digits_mlp.onnx and fhec/data/demo_digits_test.npz are
written too (the mlp_digits model and its held-out split). Files are written
byte-stably: a rebuild changes only what changed.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from cases import Case
from op_graphs import OP_CASES
from trained_models import TRAINED_CASES

import fhec
from fhec import api as fhec_api
from fhec.ir.errors import InternalCompilerError
from fhec.ir.printer import print_module

ROOT = Path(__file__).resolve().parent.parent
ALL_CASES: tuple[Callable[[], Case], ...] = TRAINED_CASES + OP_CASES
DEMO_CASE = "mlp_digits"
ELIDE_CONSTANTS_OVER = 64


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Like np.savez, but with fixed zip timestamps so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]))  # type: ignore[no-untyped-call]
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())


def onnxruntime_outputs(
    model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The reference outputs by output name. ZipMap's list of {class: probability} becomes
    an (N, classes) array, columns in the model's class order."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, dict(inputs))
    outputs = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, list):  # ZipMap: one dict per sample
            classes = list(result[0])
            result = np.array([[row[c] for c in classes] for row in result], dtype=np.float32)
        outputs[name] = np.asarray(result)
    return outputs


def predicted_classes(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """A classifier's predictions: its integer output (a label) if it has one, else the
    argmax of its scores. The golden test uses the same rule."""
    for value in outputs.values():
        if value.dtype.kind in "iu":
            return value
    (scores,) = outputs.values()
    return np.asarray(scores.argmax(axis=-1))


def compiled_ir(model: onnx.ModelProto, calibration: Mapping[str, np.ndarray]) -> str:
    compiled = fhec.compile(model, backend="reference", calibration=calibration)
    return str(print_module(compiled.module, elide_constants_over=ELIDE_CONSTANTS_OVER))


def write_case(case: Case, out: Path) -> dict[str, str]:
    """Write one case's files (all or none); returns the README facts about it."""
    expected = onnxruntime_outputs(case.model, case.inputs)
    ir_text = compiled_ir(case.model, case.calibration)
    inputs = dict(case.inputs)
    facts = dict(case.notes)
    if case.labels is not None:
        inputs["label"] = case.labels
        accuracy = float(np.mean(predicted_classes(expected) == case.labels))
        facts["test accuracy"] = f"{accuracy:.4f}"
    folder = out / case.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    onnx.save(case.model, folder / "model.onnx")
    save_npz(folder / "inputs.npz", inputs)
    save_npz(folder / "calibration.npz", case.calibration)
    save_npz(folder / "expected.npz", expected)
    (folder / "expected.ir").write_text(ir_text)
    return facts


README_HEAD = """# Golden cases

Each folder holds a model, held-out inputs, calibration samples, onnxruntime's
outputs and the IR after the common pipeline. `test_golden.py` checks the reference
backend against them. After a change that alters any of it on purpose, review the
diff and regenerate all of them with one command:

    make golden

(`examples/build_models.py --out tests/golden`; seeded, so a rebuild on the same
machine changes nothing.) Accuracies are onnxruntime's on inputs.npz.

| case | what it is | facts |
| --- | --- | --- |
"""


# The golden cases whose IR after a backend's pipeline is a golden file too.
BACKEND_IR_CASES: dict[str, tuple[str, ...]] = {
    "tfhe": ("logreg_breast_cancer", "mlp_digits", "cnn_digits"),  # test_golden_tfhe.py
    "ckks": ("logreg_breast_cancer", "mlp_digits", "cnn_digits"),  # test_golden_ckks.py
}


def write_backend_ir(out: Path, backend: str) -> None:
    """expected.<backend>.ir of each of the backend's golden cases: the IR after its
    pipeline at the default options, from the committed model and calibration files."""
    for name in BACKEND_IR_CASES[backend]:
        folder = out / name
        with np.load(folder / "calibration.npz") as data:
            calibration = {key: data[key] for key in data.files}
        module = fhec_api.lower(folder / "model.onnx", backend, calibration=calibration)
        text = print_module(module, elide_constants_over=ELIDE_CONSTANTS_OVER)
        (folder / f"expected.{backend}.ir").write_text(str(text))
        print(f"{name}: expected.{backend}.ir")


def write_readme(out: Path, rows: list[tuple[Case, dict[str, str]]]) -> None:
    lines = [README_HEAD.rstrip("\n")]
    for case, facts in rows:
        description = " ".join(case.description.split())
        fact_text = ", ".join(f"{key} {value}" for key, value in facts.items()) or "-"
        lines.append(f"| `{case.name}` | {description} | {fact_text} |")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def write_demo(case: Case, data_dir: Path) -> None:
    onnx.save(case.model, data_dir / "demo_digits_mlp.onnx")
    assert case.labels is not None
    save_npz(
        data_dir / "demo_digits_test.npz", {"input": case.inputs["input"], "label": case.labels}
    )


def remove_stale_cases(out: Path, known: list[str]) -> None:
    """Drop case folders no builder makes any more (a renamed or deleted case)."""
    for folder in out.iterdir():
        if (folder / "model.onnx").is_file() and folder.name not in known:
            shutil.rmtree(folder)
            print(f"removed stale case {folder.name}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "golden")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "fhec" / "data",
        help="where the demo model and data go",
    )
    parser.add_argument("--only", nargs="*", help="build only these cases (README untouched)")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="leave out cases fhec cannot compile yet instead of failing",
    )
    parser.add_argument(
        "--tfhe",
        action="store_true",
        help="only write expected.tfhe.ir of the TFHE golden cases (from the files in --out)",
    )
    parser.add_argument(
        "--ckks",
        action="store_true",
        help="only write expected.ckks.ir of the CKKS golden cases (from the files in --out)",
    )
    args = parser.parse_args(argv)
    if args.ckks:
        write_backend_ir(args.out, "ckks")
        return 0
    if args.tfhe:
        write_backend_ir(args.out, "tfhe")
        return 0
    known = [build.__name__ for build in ALL_CASES]
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(known)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.only:
        remove_stale_cases(args.out, known)
    rows: list[tuple[Case, dict[str, str]]] = []
    for build in ALL_CASES:
        if args.only and build.__name__ not in args.only:
            continue
        case = build()
        try:
            facts = write_case(case, args.out)
        except (fhec.FhecError, InternalCompilerError) as exc:
            if not args.allow_missing:
                raise
            shutil.rmtree(args.out / case.name, ignore_errors=True)
            print(f"left out {case.name}: {exc}", file=sys.stderr)
            continue
        rows.append((case, facts))
        print(f"{case.name}: {', '.join(f'{k} {v}' for k, v in facts.items()) or 'ok'}")
        if case.name == DEMO_CASE:
            write_demo(case, args.data_dir)
    if not args.only:
        write_readme(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
