#!/usr/bin/env bash
# llama.cpp beside TauCluster, in one go on this machine (BENCHMARKS.md, "Against llama.cpp (same machine, same run)").
# Builds Release, writes the paper-shape model and the peer's GGUF before anything is timed, then alternates:
# tau bench sessions, the peer's batched sequences, tau bench decode, the peer's decode at each context; then the
# 16-bit pair: tau bench sessions on a BF16 copy of the paper model and the peer's sequences on an F16 GGUF
# (llama.cpp's usual 16-bit type; the peer also takes --dtype bf16). SIXTEEN=0 skips the pair.
# Writes the raw outputs and one combined JSON (rows, ratios, and a `results` array TauCluster.Plots draws) under
# $OUT (default benchmarks/results), and prints the Markdown table.
#
#   benchmarks/peer.sh                                  # sessions 1,16,64 × 64 tokens; contexts 1K, 16K, 64K
#   CONTEXTS=1024,16384 benchmarks/peer.sh              # a shorter run: llama.cpp's 64K prefill takes minutes
#   PLOT=docs/peer-decode-vs-context.png benchmarks/peer.sh
#   SIXTEEN=0 benchmarks/peer.sh                       # F32 only
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

sessions=${SESSIONS:-1,16,64}
tokens=${TOKENS:-64}
contexts=${CONTEXTS:-1024,16384,65536}
steps=${STEPS:-32}
sixteen=${SIXTEEN:-1}
out=${OUT:-benchmarks/results}
mkdir -p "$out"

dotnet build -c Release Client/TauCluster.Client.csproj -nologo -v q
dotnet build -c Release benchmarks/TauCluster.Peer/TauCluster.Peer.csproj -nologo -v q

TAU_HOME=$(mktemp -d)
export TAU_HOME
trap 'rm -rf "$TAU_HOME"' EXIT
tau() { dotnet Client/bin/Release/net10.0/tau.dll "$@"; }
peer() { dotnet benchmarks/TauCluster.Peer/bin/Release/net10.0/TauCluster.Peer.dll "$@"; }

echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%FT%TZ)"
echo "== writing the models (not timed)"
tau bench decode --contexts 64 --attention causal --steps 1 --json >/dev/null
peer --only sequences --sequences 1 --tokens 1 >/dev/null
if [ "$sixteen" != 0 ]; then
  # The first tau bench wrote the F32 paper model; its BF16 copy has the same config and seed.
  tau model init --config "$TAU_HOME/models/paper/config.json" --seed 20260101 --dtype bf16 --out "$TAU_HOME/models/paper-bf16"
  peer --only sequences --dtype f16 --sequences 1 --tokens 1 >/dev/null
fi

echo "== tau bench sessions --sessions $sessions --tokens $tokens --json"
tau bench sessions --sessions "$sessions" --tokens "$tokens" --json | tee "$out/tau-sessions.json"
echo "== peer --only sequences --sequences $sessions --tokens $tokens --json"
peer --only sequences --sequences "$sessions" --tokens "$tokens" --json | tee "$out/peer-sequences.json"
echo "== tau bench decode --contexts $contexts --attention tau-index,causal --steps $steps --json"
tau bench decode --contexts "$contexts" --attention tau-index,causal --steps "$steps" --json | tee "$out/tau-decode.json"
echo "== peer --only decode --contexts $contexts --steps $steps --json"
peer --only decode --contexts "$contexts" --steps "$steps" --json | tee "$out/peer-decode.json"
sixteen_args=()
if [ "$sixteen" != 0 ]; then
  echo "== tau bench sessions --model paper-bf16 --sessions $sessions --tokens $tokens --json"
  tau bench sessions --model paper-bf16 --sessions "$sessions" --tokens "$tokens" --json | tee "$out/tau-sessions-bf16.json"
  echo "== peer --only sequences --dtype f16 --sequences $sessions --tokens $tokens --json"
  peer --only sequences --dtype f16 --sequences "$sessions" --tokens "$tokens" --json | tee "$out/peer-sequences-f16.json"
  sixteen_args=(--tau-sessions-bf16 "$out/tau-sessions-bf16.json" --peer-sequences-16 "$out/peer-sequences-f16.json")
fi

echo "== combined: $out/peer-vs-tau.json"
peer combine "$out/tau-sessions.json" "$out/tau-decode.json" "$out/peer-sequences.json" "$out/peer-decode.json" \
  "${sixteen_args[@]}" > "$out/peer-vs-tau.json" 2> "$out/peer-vs-tau.md"
cat "$out/peer-vs-tau.md"
if [ -n "${PLOT:-}" ]; then
  dotnet run -c Release --project benchmarks/TauCluster.Plots -- "$out/peer-vs-tau.json" "$PLOT" \
    "Decode vs context, paper shape, F32: TauCluster vs llama.cpp ($(nproc) cores, one run)"
fi
