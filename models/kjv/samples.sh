#!/usr/bin/env bash
# Samples of MODELS.md and how many of their words are real: continuations of one prompt at temperature 0.7 from a
# model, and the share of their words (letters only, any case) that occur anywhere in the KJV corpus.
# Usage: models/kjv/samples.sh MODEL CORPUS [SEEDS]   (MODEL: a directory or a name such as default, kjv-causal;
# SEEDS: how many samples, default 5; MAX_TOKENS: bytes each, default 300; TAU=path/to/tau.dll for a build of your own)
set -euo pipefail
model=${1:?usage: samples.sh MODEL CORPUS [SEEDS]}
corpus=${2:?usage: samples.sh MODEL CORPUS [SEEDS]}
seeds=${3:-5}
source "$(dirname "$0")/tau-env.sh"
words() { tr -c 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | grep -v '^$' || true; }
vocabulary=$(mktemp)
trap 'rm -f "$vocabulary"' EXIT
words < "$corpus" | sort -u > "$vocabulary"
total=0 real=0
for seed in $(seq 1 "$seeds"); do
  text=$(tau generate --model "$model" --prompt "And God said unto Moses" --max-tokens ${MAX_TOKENS:-300} --temperature 0.7 \
    --seed "$seed" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["text"])')
  printf 'seed %s: %s\n\n' "$seed" "$text"
  n=$(printf '%s' "$text" | words | wc -l)
  k=$(printf '%s' "$text" | words | grep -cxFf "$vocabulary" || true)
  total=$((total + n)) real=$((real + k))
done
awk -v r="$real" -v t="$total" 'BEGIN { printf "real words: %d of %d (%.1f%%)\n", r, t, 100 * r / t }'
