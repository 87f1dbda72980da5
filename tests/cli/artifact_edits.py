"""Damage an artifact's bytes in the ways the loader must catch (tests/api uses it too)."""

from __future__ import annotations

import io
import json
import zipfile


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def manifest(data: bytes) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(members(data)["manifest.json"])
    return loaded


def with_manifest(data: bytes, **changes: object) -> bytes:
    edited = {**manifest(data), **changes}
    return with_member(data, "manifest.json", json.dumps(edited).encode())


def with_member(data: bytes, name: str, content: bytes) -> bytes:
    return rezip({**members(data), name: content})


def without_member(data: bytes, name: str) -> bytes:
    files = members(data)
    del files[name]
    return rezip(files)


def edit_ir(data: bytes, old: str, new: str) -> bytes:
    text = members(data)["module.ir"].decode()
    assert old in text, f"{old!r} not in module.ir"
    return with_member(data, "module.ir", text.replace(old, new, 1).encode())


def flip_bytes(data: bytes, member: str = "module.ir", count: int = 8) -> bytes:
    """Invert `count` bytes in the middle of `member`'s compressed data."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    # The local header is 30 bytes plus the name and extra field; the data follows it.
    header = 30 + len(info.filename.encode()) + len(info.extra)
    start = info.header_offset + header + info.compress_size // 2 - count // 2
    damaged = bytearray(data)
    for index in range(start, start + count):
        damaged[index] ^= 0xFF
    return bytes(damaged)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]
