"""Progress bars for long run-time steps, on stderr and only on a terminal.

A pipe or a CI log gets no bar (tqdm's `disable=None`), so output that tools read
(`--json`, the one-line `error:` contract) stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], description: str, unit: str) -> Iterator[T]:
    """`items`, behind a bar that shows only when stderr is a terminal and the step is
    long enough to be worth one (more than one item)."""
    sized = list(items)
    if len(sized) < 2 or not sys.stderr.isatty():
        yield from sized
        return
    from tqdm import tqdm

    yield from tqdm(sized, desc=description, unit=unit, file=sys.stderr, leave=False)
