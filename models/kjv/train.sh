#!/usr/bin/env bash
# Reproduces the two models of MODELS.md from the repository root: the KJV corpus, then a Tauformer with ALiBi's
# recency bias (the built-in default) and a dot-product GPT of the same size, context (1,024 bytes) and budget
# (served as kjv-causal). The tau model scores against kjv-qk, the manifold built from the first dot-product model's
# query/key head space (MODELS.md, "The manifold"). Each run resumes where it stopped: run the script again after an
# interruption, in this session or a later one, with the same WORK_DIR.
# Usage: models/kjv/train.sh [WORK_DIR] [tau|causal …]   (default /tmp/kjv, both; TAU=path/to/tau.dll for a build of your own)
set -euo pipefail
work=${1:-/tmp/kjv}
shift || true
runs=("$@")
((${#runs[@]} > 0)) || runs=(tau causal)
source "$(dirname "$0")/tau-env.sh"
steps=2500
shape=(--layers 4 --embd 128 --heads 4 --seq-len 1024 --batch 4 --steps $steps --lr 0.003 --eval-every 250 --seed 1 --corpus "$work/kjv.txt")
[[ -d "$work/kjv-qk" ]] || cp -r "$here/models/kjv/tau/manifold" "$work/kjv-qk"

for run in "${runs[@]}"; do
  case $run in
    tau) options=(--attention tau --manifold "$work/kjv-qk" --tau-temperature 0.1 --tau-recency alibi --tau-lambda before-rope) ;;
    causal) options=(--attention causal) ;;
    *) echo "unknown run '$run': tau or causal" >&2; exit 2 ;;
  esac
  if [[ -f "$work/$run/train_log.csv" ]] && tail -1 "$work/$run/train_log.csv" | grep -q "^$steps,"; then continue; fi
  if [[ -f "$work/$run/training.json" ]]; then tau train --resume --out "$work/$run"; else tau train --out "$work/$run" "${shape[@]}" "${options[@]}"; fi
done
if [[ -f "$work/tau/train_log.csv" && -f "$work/causal/train_log.csv" ]]; then
  dotnet run --project "$here/benchmarks/TauCluster.Plots" -- training "$here/docs/training-curves.png" \
    tau="$work/tau/train_log.csv" causal="$work/causal/train_log.csv"
fi
