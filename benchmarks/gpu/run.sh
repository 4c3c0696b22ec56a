#!/usr/bin/env bash
# The GPU check, in one run (prepare it with benchmarks/gpu/prepare.sh): the device kernel tests on the GPU, greedy
# tokens on the GPU against the CPU's, and tau bench device on the paper shape and on a larger one, as JSON in $OUT.
#   DEVICE=cuda (default) | cuda:N | ilgpu-cpu   where to run
#   QUICK=1                                      tiny sizes: a dry run of this script on any machine
# Each step has a time limit (and a kill 10 s after it: .NET may linger on SIGTERM), so that the whole run ends inside
# one device call (10 minutes).
set -uo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) && : > "$OUT/run.log"
work=/tmp/tau-gpu
rm -rf "$work" && mkdir -p "$work"
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start ))s] $*" | tee -a "$OUT/run.log"; }

if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"; fi
# tar's xz needs the xz program, which an image may lack; Python's tarfile reads xz itself.
extract() {
  mkdir -p "$2"
  if command -v xz >/dev/null; then tar -C "$2" -xJf "$1"
  else python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"; fi
}
if [ -f .gpu/dotnet-runtime.tar.xz ]; then
  extract .gpu/dotnet-runtime.tar.xz "$work/dotnet"
  export DOTNET_ROOT="$work/dotnet" PATH="$work/dotnet:$PATH"
fi
extract .gpu/tau.tar.xz "$work"
[ -d .gpu/shared ] && cp -r .gpu/shared "$work/"
# Invariant globalization: the runtime then needs no libicu, which a GPU image need not have.
export TAU_HOME="$work/home" DOTNET_ROLL_FORWARD=Major DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
tau=(dotnet "$work/tau/tau.dll")
log "device $DEVICE, dotnet $(dotnet --list-runtimes | head -1)"

# 1. The kernel tests (tests/Engine.Tests/DeviceTests.cs) on the device.
log "device tests on $DEVICE"
( cd "$work/engine-tests" && TAU_TEST_DEVICE=$DEVICE timeout -k 10 150 dotnet "$work/xunit-runner/xunit.console.dll" TauCluster.Engine.Tests.dll \
    -class TauCluster.Engine.Tests.DeviceTests -xml "$OUT/device-tests.xml" -nocolor ) 2>&1 | tail -25 | tee -a "$OUT/run.log"

# 2. Decode throughput: contexts × concurrent sessions, on the paper shape and on a larger one (24 layers, n_embd 1024,
# 16 heads, 4 kv heads); the paper grid's small corner on the machine's CPU comes last (4), side by side. The steps go
# in the order of what they are worth, so that a run cut short by the call's limit has the figures first.
paper=(--model paper)
if [ "${QUICK:-0}" = 1 ]; then
  grid=(--contexts 64,128 --sessions 1,4 --steps 4); paper=(--shape 1,64,1,1); shape=2,64,4,2
  cpu_grid=(--contexts 64 --sessions 1,4 --steps 4); cache=(--cache-gib 0.05)
else
  grid=(--contexts 1024,16384,65536 --sessions 1,16,64,256 --steps 16); shape=24,1024,16,4
  cpu_grid=(--contexts 1024,16384 --sessions 1,16 --steps 8); cache=(--cache-gib 100)
fi
log "bench: paper shape on $DEVICE"
timeout -k 10 150 "${tau[@]}" bench device --device "$DEVICE" "${paper[@]}" "${grid[@]}" "${cache[@]}" --json > "$OUT/bench-paper.json" 2>>"$OUT/run.log"
log "bench: $shape on $DEVICE"
timeout -k 10 150 "${tau[@]}" bench device --device "$DEVICE" --shape $shape "${grid[@]}" "${cache[@]}" --json > "$OUT/bench-large.json" 2>>"$OUT/run.log"
# 3. Greedy tokens on the device equal the CPU's, on the default model and on the paper shape.
log "greedy tokens, $DEVICE against cpu"
models=(default paper)
[ "${QUICK:-0}" = 1 ] && models=(default)   # the paper shape's 50,257 logits a token are slow on ILGPU's CPU accelerator
for model in "${models[@]}"; do
  for d in cpu "$DEVICE"; do
    timeout -k 10 45 "${tau[@]}" generate --model $model --prompt "And it came to pass" --max-tokens 24 --temperature 0 --device "$d" --json \
      > "$work/generate-$model-${d//:/-}.json" 2>>"$OUT/run.log"
  done
  python3 - "$work/generate-$model-cpu.json" "$work/generate-$model-${DEVICE//:/-}.json" "$model" <<'PY' | tee -a "$OUT/run.log"
import json, sys
try:
    a, b = (json.load(open(p))["ids"] for p in sys.argv[1:3])
    print(f"{sys.argv[3]}: {'same' if a == b else 'DIFFERENT'} greedy tokens ({len(a)} on cpu, {len(b)} on the device)")
except (OSError, ValueError, KeyError) as e:
    print(f"{sys.argv[3]}: no comparison ({e}); see the errors above")
PY
done

# 4. The CPU beside it.
log "bench: paper shape on the cpu beside it"
timeout -k 10 45 "${tau[@]}" bench device --device cpu "${paper[@]}" "${cpu_grid[@]}" --json > "$OUT/bench-paper-cpu.json" 2>>"$OUT/run.log"
log "done"
ls -la "$OUT"
