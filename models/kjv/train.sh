#!/usr/bin/env bash
# Reproduces MODELS.md from the repository root: the KJV corpus, a dot-product GPT, a manifold built from that
# model's query/key head space, and a Tauformer of the same shape and budget on it. About 25 minutes per model
# on 2 cores. Usage: models/kjv/train.sh [WORK_DIR]   (default /tmp/kjv; the runs land in WORK_DIR/{causal,tau})
set -euo pipefail
work=${1:-/tmp/kjv}
mkdir -p "$work"
dotnet build -c Release Client -v quiet -nologo
tau() { dotnet Client/bin/Release/net10.0/tau.dll "$@"; }
shape=(--layers 4 --embd 128 --heads 4 --seq-len 256 --batch 16 --steps 5000 --lr 0.003 --eval-every 250 --seed 1)

models/kjv/prepare-corpus.sh "$work/kjv.txt"
tau train --corpus "$work/kjv.txt" --out "$work/causal" --attention causal "${shape[@]}"
tau manifold build --from "$work/causal" --out "$work/manifold" --name kjv-qk
tau train --corpus "$work/kjv.txt" --out "$work/tau" --attention tau --manifold "$work/manifold" --tau-temperature 0.02 "${shape[@]}"
dotnet run --project benchmarks/TauCluster.Plots -- training docs/training-curves.png tau="$work/tau/train_log.csv" causal="$work/causal/train_log.csv"
