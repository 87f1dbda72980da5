"""What every benchmark script shares: one core and one thread per process, a timer,
and the machine's name for the results table. Plain standard library, so the scripts'
child processes in other venvs (TenSEAL, Concrete ML) import it too (a script's own
folder is on its path)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# Thread caps for this process's libraries and for the child processes it starts.
SINGLE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
}


def single_core() -> None:
    """One core (the benchmarks' rule); threads are capped by SINGLE_THREAD."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def timed(function: Callable[[], Any], what: str = "") -> tuple[Any, float]:
    """The result and seconds of `function()`; progress on stderr when `what` is given."""
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    if what:
        print(f"  {what}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return result, seconds


def machine() -> str:
    """The CPU's model name, its core count, and how the benchmark ran on it."""
    name = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores, run on 1 core / 1 thread"
