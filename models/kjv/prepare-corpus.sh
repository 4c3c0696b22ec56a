#!/usr/bin/env bash
# The training corpus: the King James Bible (public domain) from Debian's bible-kjv package, one verse per line,
# without the verse references. Usage: models/kjv/prepare-corpus.sh OUT.txt
set -euo pipefail
out=${1:?usage: prepare-corpus.sh OUT.txt}
command -v bible >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null; }
bible -f Gen1:1-Rev22:21 | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' | grep -v '^$' > "$out"
echo "$out: $(wc -c < "$out") bytes, $(wc -l < "$out") verses, sha256 $(sha256sum "$out" | cut -c1-16)"
