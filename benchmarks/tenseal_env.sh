#!/usr/bin/env bash
# A separate venv with TenSEAL 0.3.16 for benchmarks/ckks_vs_tenseal.py.
#
# TenSEAL's wheel bundles its own SEAL build (a different SEAL than seal-python's in
# .venv) and pulls numpy from the registry; keeping it apart leaves .venv's numpy 1.26
# and seal-python untouched. fhec is not installed there: the benchmark runs TenSEAL's
# half as a child process that reads the weights and inputs from an .npz and prints JSON.
# Usage: benchmarks/tenseal_env.sh [VENV] (default build/tenseal-venv, ignored by git).
set -euo pipefail

VENV="${1:-build/tenseal-venv}"
PYTHON="${PYTHON:-python3}"
TENSEAL_VERSION=0.3.16

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "tenseal==$TENSEAL_VERSION" numpy
"$VENV/bin/python" -c "import numpy, tenseal; print('tenseal', tenseal.__version__, 'numpy', numpy.__version__)"
