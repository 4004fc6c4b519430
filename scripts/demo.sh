#!/usr/bin/env bash
# `make demo`: the main job, end to end, on the shared sample records:
#   1. parse and summarize every record;
#   2. index the MedAlign sample and one Synthea patient from two sources (C-CDA + FHIR,
#      merged into one index);
#   3. ask a few of MedAlign's public sample instructions with the local model (SmolLM2-135M
#      through transformers: no compiler needed; its first use converts the weights once) and
#      with the extractive backend, showing answers with dated, cited evidence;
#   4. `ragehr doctor`: what works on this machine.
set -euo pipefail
DATA=${DATA:-../shared/data}
BIN=${BIN:-.venv/bin}
IDX=${RAGEHR_INDEX_DIR:-indexes}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ ! -d "$DATA" ]; then
  echo "demo: shared data not found at $DATA (set DATA=...)" >&2
  exit 2
fi
R="$BIN/ragehr"

echo "== 1. Parsing and summarizing every record under $DATA"
shopt -s globstar nullglob
files=("$DATA"/medalign/*.xml "$DATA"/ccda/**/*.xml "$DATA"/synthea/**/*.xml "$DATA"/synthea/**/*.json)
"$R" inspect "${files[@]}"
echo "== ${#files[@]} records parsed"

echo
echo "== 2. Indexing (hybrid BM25 + the static embedder distilled from MiniLM; its first use distils it once, ~1-2 min), into $IDX/"
P=8b3eacb6-7d19-5265-b1e8-7fd8a32d3d96
"$R" index "$DATA"/medalign/sample-ehr-clean.xml \
  "$DATA"/synthea/ccda/exafluence_CA_$P.xml "$DATA"/synthea/fhir/exafluence_CA_$P.json --index-dir "$IDX"
echo "(a second run is a no-op:)"
"$R" index "$DATA"/medalign/sample-ehr-clean.xml --index-dir "$IDX"

ask() {
  echo
  echo "----------------------------------------------------------------------------"
  echo "Q ($1, backend $2): $3"
  echo "----------------------------------------------------------------------------"
  "$R" ask "$3" --patient "$1" --backend "$2" --budget 2048 --max-new-tokens 128 --index-dir "$IDX"
}

echo
echo "== 3. Asking MedAlign's public sample instructions (local SmolLM2-135M via transformers, then extractive)"
# Verbatim from medalign/instructions-sample.csv (ids 2016485838, 27057354, 1296158817).
# The model answers two of them (each answer takes a while on a CPU); extractive all three.
for q in "Were any complications reported during this patient's last MRI exam?" \
         "Has she ever been on a statin before?"; do
  ask sample-ehr-clean transformers "$q"
  ask sample-ehr-clean extractive "$q"
done
ask sample-ehr-clean extractive "Please show the patient's vital signs over the past 6 months"
ask "$P" extractive "What is the patient's vaccination history for COVID"
ask "$P" transformers "Summarize all blood work the patient had in the past year."

echo
echo "== 4. What works on this machine (ragehr doctor; llamacpp is an optional extra: make local-fast)"
"$R" doctor --index-dir "$IDX" --backend transformers --backend extractive --no-embedder
echo
echo "== Done. Tiny local models hallucinate: numbers and dates not found in the cited evidence"
echo "   are flagged UNSUPPORTED. Point ragehr at a served model with --backend openai --base-url ..."
