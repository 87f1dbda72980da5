"""Shared fixtures."""

from __future__ import annotations

import os

# Single-threaded BLAS keeps the 2-core machine responsive and results repeatable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
