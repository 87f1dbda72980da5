""".npz files of named arrays (inputs, outputs, calibration data): read and written
without pickle, every failure an InputError that says what is wrong with the file."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fhec.ir.errors import InputError

NPZ_MAGIC = b"PK"
NPY_MAGIC = b"\x93NUMPY"
WRITE_HINT = "write it with numpy.savez(path, name=array, ...), keyed by the model's input names"


def load_npz(path: str | Path, what: str = "input") -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name; `what` names the file in messages."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} file '{path}' does not exist", hint="check the path")
    if path.is_dir():
        raise InputError(f"{what} file '{path}' is a directory", hint=WRITE_HINT)
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
        if magic.startswith(NPY_MAGIC):
            raise InputError(
                f"{what} file '{path}' is an .npy file holding one unnamed array",
                hint=WRITE_HINT,
            )
        if not magic.startswith(NPZ_MAGIC):
            raise InputError(f"{what} file '{path}' is not an .npz file", hint=WRITE_HINT)
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # Truncated archives, bad CRCs, object arrays (which would need pickle).
        raise InputError(
            f"{what} file '{path}' is not a readable .npz file ({exc})", hint=WRITE_HINT
        ) from None


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` to exactly `path` (numpy.savez would append .npz and cannot take
    an array named "file")."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(  # type: ignore[no-untyped-call]
                        member, np.asanyarray(array), allow_pickle=False
                    )
    except OSError as exc:
        raise InputError(
            f"cannot write '{path}': {exc.strerror or exc}",
            hint="check that the folder exists and is writable",
        ) from None
