# Sourced by the scripts beside it: the repository root ($here), a Release build of tau unless $TAU names one, a tau
# function that runs it, and, when $work is set, the KJV corpus in $work/kjv.txt.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ -z "${TAU:-}" ]]; then
  dotnet build -c Release "$here/Client" -v quiet -nologo
  TAU="$here/Client/bin/Release/net10.0/tau.dll"
fi
tau() { dotnet "$TAU" "$@"; }
if [[ -n "${work:-}" ]]; then
  mkdir -p "$work"
  [[ -f "$work/kjv.txt" ]] || "$here/models/kjv/prepare-corpus.sh" "$work/kjv.txt"
fi
