""".npz input / output files: written to exactly the path given, read without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fhec.ir.errors import InputError
from fhec.runtime.npz import load_npz, save_npz


def test_save_then_load_keeps_names_dtypes_and_values(tmp_path: Path) -> None:
    arrays = {
        "file": np.arange(6, dtype=np.int64).reshape(2, 3),  # numpy.savez cannot take this name
        "probabilities": np.array([[0.25, 0.75]], np.float32),
    }
    path = tmp_path / "outputs.bin"
    save_npz(path, arrays)
    assert [p.name for p in tmp_path.iterdir()] == ["outputs.bin"]  # no ".npz" appended
    loaded = load_npz(path)
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def test_object_arrays_are_refused_rather_than_unpickled(tmp_path: Path) -> None:
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="Object arrays cannot be loaded when allow_pickle"):
        load_npz(tmp_path / "objects.npz")


def test_a_truncated_npz_is_an_input_error(tmp_path: Path) -> None:
    np.savez(tmp_path / "whole.npz", x=np.ones((50, 50)))
    data = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    expected = r"calibration file '.*cut\.npz' is not a readable \.npz file"
    with pytest.raises(InputError, match=expected):
        load_npz(tmp_path / "cut.npz", "calibration")


def test_a_directory_is_not_an_npz_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_npz(tmp_path)
