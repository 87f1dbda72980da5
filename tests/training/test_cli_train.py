"""`fhec train`: the tuned model, the loss only when asked, and every user mistake as
one `error:` line with exit code 2.

The contract's cases run as real `fhec` processes (concurrently); the others call
`fhec.cli.main` in this process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import Result, assert_user_error, run_fhec
from onnx import numpy_helper

from fhec.cli import main

TRAIN = ("train", "mlp3.onnx", "--loss", "cross-entropy", "--lr", "0.1", "--batch-size", "4")


@pytest.fixture(scope="module")
def folder(models: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    np.savez(models / "data.npz", x=x, label=rng.integers(0, 3, 10))
    np.savez(models / "nolabel.npz", x=x)
    np.savez(models / "class7.npz", x=x, label=np.full(10, 7))
    return models


PROCESS_CASES = {
    "show-loss": (*TRAIN, "--data", "data.npz", "--epochs", "2", "--show-loss", "-o", "a.onnx"),
    "quiet": (*TRAIN, "--data", "data.npz", "--trainable", "fc1.weight", "fc2.weight",
              "--momentum", "0.9", "-o", "b.onnx"),
    "no-label": (*TRAIN, "--data", "nolabel.npz", "-o", "c.onnx"),
    "unknown-weight": (*TRAIN, "--data", "data.npz", "--trainable", "head.weight", "-o", "d.onnx"),
    "diverges": ("train", "mlp3.onnx", "--loss", "mse", "--lr", "1e9", "--batch-size", "2",
                 "--data", "targets.npz", "--epochs", "3", "-o", "e.onnx"),
}


@pytest.fixture(scope="module")
def results(folder: Path) -> dict[str, Result]:
    rng = np.random.default_rng(1)
    np.savez(folder / "targets.npz", x=rng.standard_normal((8, 4)).astype(np.float32) * 10,
             label=rng.standard_normal((8, 3)).astype(np.float32))
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = {name: pool.submit(run_fhec, *args, cwd=folder)
                for name, args in PROCESS_CASES.items()}
        return {name: future.result() for name, future in done.items()}


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_train_writes_the_tuned_model_and_shows_the_loss(folder: Path,
                                                         results: dict[str, Result]) -> None:
    result = results["show-loss"]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [["step", str(i)] for i in range(1, 5)]
    assert all("loss" in line for line in lines[:4])
    assert lines[4] == ("wrote a.onnx: trained fc2.weight, fc2.bias for 2 epoch(s), 4 steps of "
                        "4 samples (2 samples per epoch left out of a full batch)")
    before, after = _weights(folder / "mlp3.onnx"), _weights(folder / "a.onnx")
    assert not np.array_equal(before["fc2.weight"], after["fc2.weight"])
    np.testing.assert_array_equal(before["fc1.weight"], after["fc1.weight"])


def test_train_prints_no_loss_unless_asked(folder: Path, results: dict[str, Result]) -> None:
    result = results["quiet"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrote b.onnx: trained fc1.weight, fc2.weight for 1 epoch(s), 2 steps of 4 samples "
        "(2 samples per epoch left out of a full batch)"]
    assert "loss" not in result.stdout + result.stderr
    before, after = _weights(folder / "mlp3.onnx"), _weights(folder / "b.onnx")
    np.testing.assert_array_equal(before["fc2.bias"], after["fc2.bias"])
    assert not np.array_equal(before["fc1.weight"], after["fc1.weight"])


def test_missing_label_array(results: dict[str, Result]) -> None:
    assert_user_error(results["no-label"], "training data 'nolabel.npz' has no 'label' array",
                      "(it holds: x)")


def test_unknown_trainable_lists_the_weights(results: dict[str, Result]) -> None:
    assert_user_error(results["unknown-weight"], "no trainable weight named 'head.weight'",
                      "fc1.weight, fc1.bias, fc2.weight, fc2.bias (or 'last')")


def test_diverging_learning_rate(results: dict[str, Result]) -> None:
    assert_user_error(results["diverges"], "training diverged at step", "smaller learning rate",
                      "(--lr)")


@pytest.mark.parametrize(("args", "fragments"), [
    (("--loss", "bce", "--data", "data.npz"), ("bce needs one logit", "3 values per sample")),
    (("--loss", "cross-entropy", "--data", "class7.npz"), ("must lie in 0..2", "found 7")),
    (("--loss", "mse", "--data", "data.npz"), ("the labels have shape (10,)", "needs (10, 3)")),
    (("--loss", "cross-entropy", "--data", "data.npz", "--backend", "ckks"),
     ("training on ckks needs calibration data", "--calibration DATA.npz")),
    (("--loss", "cross-entropy", "--data", "data.npz", "--batch-size", "20"),
     ("holds 10 samples, fewer than the batch size 20",)),
])
def test_bad_training_input(folder: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                            fragments: tuple[str, ...]) -> None:
    monkeypatch.chdir(folder)
    code = main(["train", "mlp3.onnx", "--lr", "0.1", "--batch-size", "4", *args, "-o", "t.onnx"])
    _assert_one_error(code, capsys.readouterr().err, fragments)


@pytest.mark.parametrize(("args", "fragments"), [
    (("--lr", "fast"), ("argument --lr: expected a positive number, got 'fast'",)),
    (("--lr", "-0.5"), ("argument --lr: expected a positive number, got -0.5",)),
    (("--lr", "0.1", "--momentum", "1"), ("--momentum: expected a number in [0, 1), got 1",)),
    (("--lr", "0.1", "--momentum", "x"), ("--momentum: expected a number in [0, 1), got 'x'",)),
    (("--lr", "0.1", "-o", "mlp3.onnx"), ("the output 'mlp3.onnx' would overwrite the model",)),
    (("--lr", "0.1", "--loss", "hinge"), ("argument --loss: invalid choice: 'hinge'",)),
])
def test_bad_options(folder: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                     fragments: tuple[str, ...]) -> None:
    monkeypatch.chdir(folder)
    base = ["train", "mlp3.onnx", "--data", "data.npz", "--loss", "mse", "-o", "t.onnx"]
    _assert_one_error(main([*base, *args]), capsys.readouterr().err, fragments)


def _assert_one_error(code: int, stderr: str, fragments: tuple[str, ...]) -> None:
    assert code == 2
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
