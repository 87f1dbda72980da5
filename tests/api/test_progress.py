"""Progress bars appear only on a terminal: pipes and logs stay clean."""

from __future__ import annotations

import io
import sys

import pytest

from fhec.backends.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress(range(5), "work", "step")) == [0, 1, 2, 3, 4]
    assert stream.getvalue() == ""


def test_bar_on_a_terminal_for_several_items(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress(range(5), "work", "step")) == [0, 1, 2, 3, 4]
    assert "work:" in stream.getvalue() and "/5" in stream.getvalue()  # tqdm rate-limits redraws


def test_no_bar_for_a_single_item(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    assert list(progress([7], "work", "step")) == [7]
    assert stream.getvalue() == ""
