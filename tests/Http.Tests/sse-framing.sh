#!/usr/bin/env bash
# Streams one chat completion with curl -N and checks the raw server-sent-events framing:
# every event is one "data: " line followed by a blank line, each payload is JSON, and the stream ends "data: [DONE]".
set -euo pipefail
base=${1:?usage: sse-framing.sh BASE_URL}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
curl -sS -N --max-time 60 "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "messages": [{"role": "user", "content": "frame me"}], "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}}' > "$out"

fail() { echo "FAIL: $*"; echo "--- stream ---"; cat "$out"; exit 1; }
[ -s "$out" ] || fail "empty stream"
tail -c 14 "$out" | cmp -s - <(printf 'data: [DONE]\n\n') || fail "does not end with data: [DONE] and a blank line"
events=0
while IFS= read -r line; do
  if [ -z "$line" ]; then continue; fi
  case "$line" in
    "data: [DONE]") ;;
    data:\ \{*) echo "${line#data: }" | python3 -c 'import json,sys; json.load(sys.stdin)' || fail "not JSON: $line"; events=$((events + 1)) ;;
    *) fail "not an SSE data line: $line" ;;
  esac
done < "$out"
# every data line is followed by exactly one blank line
awk 'NR % 2 == 1 && !/^data: / { exit 1 } NR % 2 == 0 && $0 != "" { exit 1 }' "$out" || fail "events are not separated by single blank lines"
grep -q '"finish_reason":"length"' "$out" || fail "no finish_reason"
grep -q '"usage":{"prompt_tokens"' "$out" || fail "no usage event"
echo "ok: $events JSON events, then [DONE]"
