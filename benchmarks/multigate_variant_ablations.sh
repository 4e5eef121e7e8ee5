#!/bin/bash
# The ablations of docs/methods/multigate.md on the best variant found on valid
# (configs/multigate/joint-layers.yaml): each row drops or swaps one part, on the joint
# speaker-independent folds, model seeds 0 1 2 (the folds stay the same); single nets
# (members=1), so a row says what the part is worth, not what averaging several nets adds.
#   bash benchmarks/multigate_variant_ablations.sh [variant ...]      (default: all, in this order)
#   CONFIG=configs/multigate/joint-twins.yaml OUT=runs/multigate/twins-ablations bash ... (another base)
# Then: .venv/bin/python benchmarks/multigate_report.py runs/multigate/variant-ablations
# Each run is resumable (finished folds are reused); a variant x seed is ~4 min here
# (two folds at a time, one thread each).
set -euo pipefail
cd "$(dirname "$0")/.."
E=.venv/bin/emolingua
CONFIG=${CONFIG:-configs/multigate/joint-layers.yaml}
OUT=${OUT:-runs/multigate/variant-ablations}
ONLY="-s model_options.speaker=none -s model_options.gate=none -s model_options.split_layers=[]"
declare -A VARIANTS=(
  [full]=""
  [no-gate]="-s model_options.gate=none"
  [gate-whisper]="-s model_options.gate_input=whisper-base@3"
  [no-speaker-vector]="-s model_options.speaker=none -s model_options.gate_input=ge2e -s model_options.vector_streams=[egemaps,mfcc,whisper-base@0,whisper-base@1,whisper-base@2,whisper-base@3,whisper-base@4,whisper-base@5,whisper-base@6]"
  [mask-per-domain]="-s model_options.mask_streams=all"
  [mask-shared]="-s model_options.mask_streams=all -s model_options.mask=shared"
  [mask-per-domain-l0]="-s model_options.mask_streams=all -s model_options.l0=0.01"
  [mask-shared-l0]="-s model_options.mask_streams=all -s model_options.mask=shared -s model_options.l0=0.01"
  [mask-lr-l0-1]="-s model_options.mask_streams=all -s model_options.mask_lr=0.05 -s model_options.l0=1.0"
  [mask-lr-l0-10]="-s model_options.mask_streams=all -s model_options.mask_lr=0.05 -s model_options.l0=10.0"
  [contrastive-0.1]="-s model_options.alpha=0.1"
  [alpha-on-valid]="-s model_options.alpha_grid=[0.0,0.1]"
  [wide]="-s model_options.wide=true"
  [per-language-heads]="-s model_options.domain=language"
  [ls-per-corpus]="-s model=multigate-ls -s joint=false"
  [no-twins]="-s model_options.speaker_twins=[]"
  [twins]="-s model_options.speaker_twins=[whisper-base,egemaps,mfcc,ge2e]"
  [only-whisper-pooled]="-s model_options.vector_streams=[whisper-base] $ONLY"
  [only-egemaps]="-s model_options.vector_streams=[egemaps] $ONLY"
  [only-mfcc]="-s model_options.vector_streams=[mfcc] $ONLY"
  [only-ge2e]="-s model_options.vector_streams=[ge2e] $ONLY"
)
ORDER=(full no-speaker-vector no-gate gate-whisper mask-per-domain mask-shared mask-per-domain-l0 contrastive-0.1
       only-whisper-pooled only-egemaps only-mfcc only-ge2e ls-per-corpus mask-shared-l0 alpha-on-valid wide
       per-language-heads mask-lr-l0-10 mask-lr-l0-1)
NAMES=("${@:-${ORDER[@]}}")
# the baseline on the same folds (deterministic: one run; the features are already in the store)
$E benchmark --config configs/multigate/logreg.yaml --output "$OUT/logreg" --workers 2 --threads 1
for name in ${NAMES[@]}; do
  for seed in 0 1 2; do
    $E benchmark --config "$CONFIG" --output "$OUT/$name-seed$seed" \
       --workers 2 --threads 1 -s model_options.seed="$seed" -s model_options.members=1 ${VARIANTS[$name]} \
       || echo "multigate_variant_ablations: $name seed $seed failed; going on" >&2
  done
done
