#!/usr/bin/env bash
# A separate venv with Concrete ML 1.9.0 for benchmarks/tfhe_vs_concrete_ml.py.
#
# Concrete ML 1.9.0 pins torch==2.3.1 (a multi-GB CUDA build from the registry); the
# CPU torch 2.13.0 serves it (with the two run-time shims the benchmark installs), so:
# torch first, then Concrete ML's own pins without torch under a torch==2.13.0
# constraint, then concrete-ml itself without dependencies, then requests.
# About a minute (64 s here) and 2.2 GB. Usage: benchmarks/concrete_ml_env.sh [VENV] (default
# build/concrete-ml-venv, ignored by git). fhec is not installed there: it needs
# concrete-python 2.11, Concrete ML pins 2.10; the benchmark runs each in its own venv.
set -euo pipefail

VENV="${1:-build/concrete-ml-venv}"
PYTHON="${PYTHON:-python3}"
CML_VERSION=1.9.0
TORCH_VERSION=2.13.0

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==$TORCH_VERSION"

# Concrete ML's own requirements, read from its wheel's metadata, torch and setuptools
# left out.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" download --quiet --no-deps --dest "$WORK" "concrete-ml==$CML_VERSION"
"$VENV/bin/python" - "$WORK" > "$WORK/requirements.txt" <<'EOF'
import pathlib, re, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("concrete_ml-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = archive.read(name).decode()
for line in metadata.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    requirement = line.split(":", 1)[1].strip()
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
    # torch: the CPU 2.13.0 above; setuptools: its 75.3.0 pin conflicts with concrete's
    # own setuptools>=77.0.3 (given below)
    if "extra ==" in requirement or name in ("torch", "setuptools"):
        continue
    print(requirement)
EOF
printf 'torch==%s\nsetuptools>=77.0.3,<81\n' "$TORCH_VERSION" > "$WORK/constraints.txt"
"${PIP[@]}" -r "$WORK/requirements.txt" -c "$WORK/constraints.txt" "setuptools>=77.0.3,<81"
"${PIP[@]}" --no-deps "$WORK"/concrete_ml-*.whl
"${PIP[@]}" requests
"$VENV/bin/python" -c "import concrete.ml, torch; print('concrete-ml', concrete.ml.__version__, 'torch', torch.__version__)"
