#!/usr/bin/env bash
# The ablation of MODELS.md: short runs of one budget on one KJV split, each changing one thing about the tau model.
# Usage: models/kjv/ablation.sh [WORK_DIR] [ROW…]   (default /tmp/kjv-ablation, every row; TAU=path/to/tau.dll to use a
# build of your own). A row already finished is skipped and one cut short resumes, so the script can be run again
# until the table is whole; results.tsv holds one line a row: name, final validation loss (nats/byte), perplexity, minutes.
set -euo pipefail
work=${1:-/tmp/kjv-ablation}
shift || true
source "$(dirname "$0")/tau-env.sh"

steps=800
budget=(--layers 4 --embd 128 --seq-len 256 --batch 16 --steps $steps --lr 0.003 --eval-every 200 --seed 1 --corpus "$work/kjv.txt")
manifold="$here/models/kjv/tau/manifold"   # kjv-qk: from the trained dot-product model's layer-0 q/k head space (D = 32)

declare -A rows=(
  [causal]="--attention causal --heads 4"
  [causal-h8]="--attention causal --heads 8"
  [tau]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02"
  [tau-t0.005]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.005"
  [tau-t0.05]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.05"
  [tau-t0.2]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.2"
  [tau-chain]="--attention tau --heads 4 --laplacian chain --tau-temperature 0.02"
  [tau-h8-chain]="--attention tau --heads 8 --laplacian chain --tau-temperature 0.02"
  [tau-h8]="--attention tau --heads 8 --manifold $work/manifold-h8 --tau-temperature 0.02"
  [tau-before-rope]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-lambda before-rope"
  [tau-alibi]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-recency alibi"
  [tau-alibi-before-rope]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope"
  # Around the chosen variant (ALiBi, λ before RoPE): its temperature, its Laplacian, more and smaller heads.
  [alibi-t0.005]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.005 --tau-recency alibi --tau-lambda before-rope"
  [alibi-t0.1]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.1 --tau-recency alibi --tau-lambda before-rope"
  [alibi-chain]="--attention tau --heads 4 --laplacian chain --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope"
  [alibi-h8]="--attention tau --heads 8 --manifold $work/manifold-h8 --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope"
  # λ with weights of its own, on the chosen variant: a temperature learned per layer and kv head; the seed's projected
  # regime (learned maps of the heads into the manifold's dimension), onto kjv-qk (F = D = 32, starting as the identity)
  # and onto a manifold of data embeddings, the shared cve-minilm-384 (MiniLM sentence embeddings, F = 384).
  [alibi-learned-t]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope --tau-learn-temperature"
  [alibi-proj-qk]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope --tau-projection 32"
  [alibi-proj-cve]="--attention tau --heads 4 --manifold $here/../shared/manifolds/cve-minilm-384 --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope --tau-projection 384"
  [tau-proj-qk]="--attention tau --heads 4 --manifold $manifold --tau-temperature 0.02 --tau-projection 32"
  [alibi-h8-chain]="--attention tau --heads 8 --laplacian chain --tau-temperature 0.02 --tau-recency alibi --tau-lambda before-rope"
)
order=(causal tau tau-before-rope tau-alibi tau-alibi-before-rope alibi-t0.005 alibi-t0.1 alibi-chain causal-h8 alibi-h8 alibi-learned-t alibi-proj-qk alibi-proj-cve
  tau-proj-qk alibi-h8-chain
  tau-t0.005 tau-t0.05 tau-t0.2 tau-chain tau-h8-chain tau-h8)
(($# > 0)) && order=("$@")

for name in "${order[@]}"; do
  out="$work/$name"
  if [[ -f "$out/train_log.csv" ]] && tail -1 "$out/train_log.csv" | grep -q "^$steps,"; then continue; fi
  # The 8-head manifold comes from the 8-head dot-product model, as kjv-qk comes from the 4-head one.
  if [[ $name == *-h8 && $name != causal-h8 && ! -d "$work/manifold-h8" ]]; then
    tau manifold build --from "$work/causal-h8" --out "$work/manifold-h8" --name kjv-qk-h8
  fi
  started=$(date +%s)
  if [[ -f "$out/training.json" ]]; then tau train --resume --out "$out"; else tau train --out "$out" "${budget[@]}" ${rows[$name]}; fi
  minutes=$(( ($(date +%s) - started) / 60 ))
  loss=$(awk -F, 'NR > 1 && $4 != "" { v = $4 } END { print v }' "$out/train_log.csv")
  printf '%s\t%s\t%s\t%s\n' "$name" "$loss" "$(awk -v l="$loss" 'BEGIN { printf "%.3f", exp(l) }')" "$minutes" >> "$work/results.tsv"
done
column -t -s $'\t' "$work/results.tsv"
