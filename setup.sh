#!/usr/bin/env bash
# Set up emolingua in ./.venv. torch is pinned to 2.13.0: on the project's machines that
# exact version is a CPU build on local disk, any looser spelling pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/emolingua --version
