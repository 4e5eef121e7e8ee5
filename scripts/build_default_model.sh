#!/usr/bin/env bash
# Rebuild the shipped default pipeline (src/emolingua/data/default) from ../shared/corpora, and
# its model card's measured scores (benchmarks/default_model.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/emolingua train --config configs/default-model.yaml "$@"
du -sh src/emolingua/data/default
