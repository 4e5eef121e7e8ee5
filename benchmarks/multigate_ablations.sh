#!/bin/bash
# The ablations of docs/methods/multigate.md: every variant on the joint speaker-independent
# folds of configs/multigate/joint.yaml, model seeds 0 1 2 (the folds stay the same).
#   bash benchmarks/multigate_ablations.sh [seeds...]          e.g.  bash benchmarks/multigate_ablations.sh 0
# Then: .venv/bin/python benchmarks/multigate_report.py runs/multigate/ablations
# Each run is resumable (finished folds are reused); a variant x seed is about 4 folds x 10 min here.
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/emolingua
SEEDS=("${@:-0 1 2}")
declare -A VARIANTS=(
  [full]=""
  [no-gate]="-s model_options.gate=none"
  [gate-whisper]="-s model_options.gate_input=whisper-base"
  [mask-shared]="-s model_options.mask=shared"
  [mask-none]="-s model_options.mask=none"
  [mask-per-language-l0]="-s model_options.l0=0.01"
  [mask-shared-l0]="-s model_options.mask=shared -s model_options.l0=0.01"
  [no-contrastive]="-s model_options.alpha=0"
  [alpha-on-valid]="-s model_options.alpha_grid=[0.01,0.1,0.5]"
  [only-whisper-layer3]="-s model_options.frame_streams=[whisper-base/layer3] -s model_options.vector_streams=[none] -s model_options.speaker=none -s model_options.gate=none"
  [only-whisper-layer6]="-s model_options.frame_streams=[whisper-base/layer6] -s model_options.vector_streams=[none] -s model_options.speaker=none -s model_options.gate=none"
  [only-mfcc]="-s model_options.frame_streams=[mfcc/mfcc] -s model_options.vector_streams=[none] -s model_options.speaker=none -s model_options.gate=none"
  [only-whisper-pooled]="-s model_options.frame_streams=[none] -s model_options.vector_streams=[whisper-base] -s model_options.speaker=none -s model_options.gate=none"
  [only-egemaps]="-s model_options.frame_streams=[none] -s model_options.vector_streams=[egemaps] -s model_options.speaker=none -s model_options.gate=none"
  [only-ge2e]="-s model_options.frame_streams=[none] -s model_options.vector_streams=[ge2e] -s model_options.speaker=none -s model_options.gate=none"
)
for seed in ${SEEDS[@]}; do
  for name in full no-gate gate-whisper mask-shared mask-none mask-per-language-l0 mask-shared-l0 no-contrastive \
              alpha-on-valid only-whisper-layer3 only-whisper-layer6 only-mfcc only-whisper-pooled only-egemaps only-ge2e; do
    $E benchmark --config configs/multigate/joint.yaml --output "runs/multigate/ablations/$name-seed$seed" \
       -s model_options.seed="$seed" ${VARIANTS[$name]}
  done
  $E benchmark --config configs/multigate/ls.yaml --output "runs/multigate/ablations/ls-per-corpus-seed$seed" -s model_options.seed="$seed"
done
$E benchmark --config configs/multigate/logreg.yaml --output runs/multigate/ablations/logreg   # deterministic: one run
