#!/usr/bin/env bash
# `make demo`: the main job, end to end, on the shared sample records.
set -euo pipefail
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
if [ ! -d "$DATA" ]; then
  echo "demo: shared data not found at $DATA (set DATA=...)" >&2
  exit 2
fi
echo "== Parsing and summarizing every record under $DATA"
shopt -s globstar nullglob
n=0; failed=0
for f in "$DATA"/medalign/*.xml "$DATA"/ccda/**/*.xml "$DATA"/synthea/**/*.xml "$DATA"/synthea/**/*.json; do
  n=$((n+1))
  if ! "$BIN/ragehr" inspect "$f"; then failed=$((failed+1)); fi
done
echo "== $n records, $failed failed"
[ "$failed" -eq 0 ]
