#!/usr/bin/env bash
# The scores the shipped default model's card quotes: its recipe (configs/default-model.yaml) under
# the benchmark's speaker-independent protocols. Every fold trains its own model; the shipped one is
# trained on all the data (scripts/build_default_model.sh).
#   bash benchmarks/default_model.sh [OUT]     (default runs/default-model; needs ../shared/corpora)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/default-model}
CORPORA="--corpus casia --corpus emodb --corpus emovo --corpus ravdess --corpus savee --corpus urdu"
COMMON=(--corpora ../shared/corpora --features whisper-base --normalise train $CORPORA -s 'drop_labels=[calm,boredom]')
EMO=(--model logreg --model-option class_weight=balanced)
B=.venv/bin/emolingua
$B benchmark "${COMMON[@]}" "${EMO[@]}" --protocol speaker-kfold:4 --joint --output "$OUT/joint" > /dev/null
$B benchmark "${COMMON[@]}" "${EMO[@]}" --protocol leave-one-language-out --output "$OUT/lolo" > /dev/null
for t in arousal valence; do
  $B benchmark "${COMMON[@]}" --model ridge --target $t --protocol speaker-kfold:4 --joint --output "$OUT/joint-$t" > /dev/null
  $B benchmark "${COMMON[@]}" --model ridge --target $t --protocol leave-one-language-out --output "$OUT/lolo-$t" > /dev/null
done
for d in joint lolo joint-arousal lolo-arousal joint-valence lolo-valence; do
  echo "== $d"; sed -n '/^| corpus | language/,/^$/p' "$OUT/$d/report.md"
done
