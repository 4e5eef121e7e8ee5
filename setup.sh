#!/usr/bin/env bash
# Set up emolingua in ./.venv.
# - torch is pinned to 2.13.0: on the project's machines that exact version is a CPU build
#   on local disk; any looser spelling pulls a multi-GB CUDA build.
# - Extras (EMOLINGUA_EXTRAS, default "dev,speaker,opensmile,ray"): `speaker` is Resemblyzer's GE2E
#   encoder (Apache-2.0); `opensmile` is openSMILE (eGeMAPS, ComParE) under a NON-COMMERCIAL
#   research licence; `ray` runs extraction and benchmark jobs on a Ray cluster (--executor ray;
#   installed by default so that CI tests it). Set EMOLINGUA_EXTRAS=dev,speaker to leave openSMILE
#   and Ray out.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
EXTRAS=${EMOLINGUA_EXTRAS:-dev,speaker,opensmile,ray}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet)
"${pip[@]}" --upgrade pip
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[${EXTRAS}]"
if [[ ",${EXTRAS}," == *",speaker,"* ]]; then
  # Resemblyzer's metadata asks for `webrtcvad`, whose module no longer imports with current
  # setuptools; the `speaker` extra brings the drop-in `webrtcvad-wheels` instead.
  "${pip[@]}" --no-deps "resemblyzer==0.1.4"
fi
if [[ ",${EXTRAS}," == *",opensmile,"* ]]; then
  echo "note: openSMILE is installed for research use; its licence forbids commercial use." >&2
fi
.venv/bin/emolingua --version
