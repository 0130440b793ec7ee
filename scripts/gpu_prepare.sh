#!/usr/bin/env bash
# Prepares, on this machine (with PyPI), what scripts/gpu_check.sh installs on the GPU machine,
# which has Python 3.12 with torch, sacrebleu and sentencepiece but no network: the wheels and
# sdists it lacks, for Python 3.12, in .whl/py312 (ignored by git; the device tool carries it:
# carry ".whl/py312").  Idempotent; about 20 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
WHL=${WHL:-$PWD/.whl/py312}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$WHL"
get() { "$PY" -m pip download --disable-pip-version-check -q -d "$WHL" "$@"; }
# fairseq's needs, named one by one (--no-deps: hydra-core's antlr4 4.9 exists only as an sdist, below)
get --python-version 3.12 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any --no-deps \
    hydra-core==1.3.2 omegaconf==2.3.0 PyYAML regex bitarray tqdm cffi pycparser cython setuptools wheel packaging
# what importing fairseq_mh needs beyond fairseq (the convergence diagnostics; pure Python)
get --python-version 3.12 --only-binary=:all: --platform any --no-deps \
    arviz-base==0.8.2 arviz-stats==0.8.0 xarray-einstats==0.9.1 xarray==2026.9.0
get --no-deps --no-binary=:all: --no-build-isolation fairseq-fixed==0.12.3.1 antlr4-python3-runtime==4.9.3
ls "$WHL" | sed 's/^/  /'
du -sh "$WHL"
