#!/usr/bin/env bash
# Regenerates every table of docs/RESULTS.md on SmolLM2-135M-Instruct (the packaged GGUF
# model) into OUT (default out/results), then writes OUT/RESULTS.tables.md from the outputs.
#
#   scripts/results.sh [--quick] [--out DIR] [--only STEP[,STEP...]]
#   (or: cargo xtask results [--quick] ...)
#
# Each step writes OUT/<step>/ (its log to OUT/logs/<step>.txt) and, last, OUT/<step>/.done; a
# rerun skips finished steps, so an
# interrupted run resumes where it stopped (delete OUT/<step> to redo one). --quick runs every
# step at CI scale (minutes, not hours): same code paths, tiny sizes, 2 seeds instead of 5.
# The NEG experiments and the studies run once per seed (steps <name>-s<seed>); the skill-probe
# steps run once, with bootstrap intervals over test prompts.
# NEG_RESULTS_NO_BUILD=1 uses the `neg` binary already in target/release; NEG_BIN=PATH runs that
# binary instead (and builds nothing): a copy keeps a long run on one build while you rebuild.
set -euo pipefail
# The body is one function, read whole before it runs, so editing this file during a long run
# cannot change the run.
main() {
cd "$(dirname "${BASH_SOURCE[0]}")/.."
QUICK=0; OUT=out/results; ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "results.sh: error: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
MODEL=smollm2-135m-instruct
FACTS=../shared/data/myriadlama-probing/llama2-7b-it.jsonl
[ -f "$FACTS" ] || { echo "results.sh: error: $FACTS is missing (../shared beside the clone)" >&2; exit 1; }
if [ -n "${NEG_BIN:-}" ]; then NEG="$NEG_BIN"
else
  if [ "${NEG_RESULTS_NO_BUILD:-0}" != 1 ]; then cargo build --release --bin neg --quiet; fi
  NEG=target/release/neg
fi
mkdir -p "$OUT"

if [ $QUICK = 1 ]; then
  SEEDS="0 1"; SKILL_SIZES=(--train-size 12 --valid-size 4 --test-size 4); SKILL_TASKS="agnews,toxicity"
  FEW_TASKS="toxicity"; LIN=(--max-prompts 2 --neurons 4 --top-neurons 2 --ranges 0.5,2 --points-per-side 4)
  LINF=(--max-prompts 2 --neurons 4 --ranges 0.2,0.4); EST=(--max-prompts 2 --neurons 4 --methods neurgrad,cg); ATTR=(--max-prompts 2 --ks 1,4 --max-shift 0.2 --methods neurgrad,cg)
  DIST=(--max-prompts 2); MULTI=(--max-prompts 2 --ranges 0.5 --step 0.25 --max-log2 3)
  STUDY=(--train-size 12 --valid-size 4 --test-size 4); TS_SIZES=4,8,12; LENS=(--n-fit 8 --n-eval 8); AUX=(--n 16 --n-generations 3 --max-new-tokens 4)
else
  # Sized so that the whole run fits in a few hours on 2 CPU cores.
  SEEDS="0 1 2 3 4"; SKILL_SIZES=(--train-size 128 --valid-size 32 --test-size 64)
  SKILL_TASKS="clang8,agnews,myriadlama,mnli,toxicity,lti"; FEW_TASKS="$SKILL_TASKS"
  LIN=(--max-prompts 5 --neurons 20 --top-neurons 5); LINF=(--max-prompts 5 --neurons 20 --ranges 0.2,0.4,1,2,4,6,8,10); EST=(--max-prompts 3 --neurons 20)
  ATTR=(--max-prompts 2); DIST=(--max-prompts 50); MULTI=(--max-prompts 4)
  STUDY=(--train-size 128 --valid-size 32 --test-size 64); TS_SIZES=16,32,64,128; LENS=(); AUX=(--n 64 --n-generations 16)
fi

# step NAME CMD...: runs CMD unless OUT/NAME/.done exists (or --only excludes it).
step() {
  local name="$1"; shift
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then return; fi
  if [ -f "$OUT/$name/.done" ]; then echo "results: $name done, skipped"; return; fi
  echo "results: $name"
  local t0=$SECONDS
  rm -rf "$OUT/$name"; mkdir -p "$OUT/$name" "$OUT/logs"
  # Logs live outside the step's directory: skill_probe replaces its --out as a unit.
  local log="$OUT/logs/$name.txt"
  "$@" > "$log" 2>&1 || { echo "results: $name failed, see $log" >&2; tail -3 "$log" >&2; exit 1; }
  echo $((SECONDS - t0)) > "$OUT/$name/.done"
}

# Skill probes (Tables 3, 8, 9): zero-shot leak-free first (published and few-shot below).
step skill-zero-leakfree $NEG skill-probe --model $MODEL --tasks $SKILL_TASKS "${SKILL_SIZES[@]}" --compact --quiet --out "$OUT/skill-zero-leakfree"
# NEG experiments on MyriadLAMA facts (single-token answers for this tokenizer), one run per seed.
for s in $SEEDS; do
  step linearity-s$s $NEG linearity --model $MODEL --prompts $FACTS --seed $s "${LIN[@]}" --quiet --out "$OUT/linearity-s$s"
  # Fig. 2 on the paper's grid: one step of 0.2 for every range (so R starts at 0.2).
  step linearity-fixed-s$s $NEG linearity --model $MODEL --prompts $FACTS --seed $s "${LINF[@]}" --step 0.2 --top-neurons 0 --quiet --out "$OUT/linearity-fixed-s$s"
  step estimation-s$s $NEG estimate --model $MODEL --prompts $FACTS --seed $s "${EST[@]}" --quiet --out "$OUT/estimation-s$s"
done
step skill-zero-published $NEG skill-probe --model $MODEL --tasks $SKILL_TASKS --splits published "${SKILL_SIZES[@]}" --compact --quiet --out "$OUT/skill-zero-published"
step skill-few-leakfree $NEG skill-probe --model $MODEL --tasks $FEW_TASKS --shots few "${SKILL_SIZES[@]}" --compact --quiet --out "$OUT/skill-few-leakfree"
# One run per seed of every other experiment, seed by seed, so that a run cut short still has
# whole seeds of every table. Each seed draws its own prompts (and re-split, forests, neurons).
for s in $SEEDS; do
  step attribution-s$s $NEG attribution --model $MODEL --prompts $FACTS --seed $s "${ATTR[@]}" --quiet --out "$OUT/attribution-s$s"
  step distribution-s$s $NEG distribution --model $MODEL --prompts $FACTS --seed $s "${DIST[@]}" --quiet --out "$OUT/distribution-s$s"
  step multi-neuron-s$s $NEG multi-neuron --model $MODEL --prompts $FACTS --seed $s "${MULTI[@]}" --quiet --out "$OUT/multi-neuron-s$s"
  # Studies (Fig. 7-9) on one task each, NeuronLens and auxiliary metrics.
  step training-size-s$s $NEG training-size --model $MODEL --task agnews --seed $s "${STUDY[@]}" --sizes "$TS_SIZES" --quiet --out "$OUT/training-size-s$s"
  step robustness-s$s $NEG robustness --model $MODEL --task agnews --seed $s "${STUDY[@]}" --quiet --out "$OUT/robustness-s$s"
  step substitutability-s$s $NEG substitutability --model $MODEL --task agnews --seed $s "${STUDY[@]}" --quiet --out "$OUT/substitutability-s$s"
  step tree-shape-s$s $NEG tree-shape --model $MODEL --task agnews --seed $s "${STUDY[@]}" --quiet --out "$OUT/tree-shape-s$s"
  step neuronlens-s$s $NEG lens --model $MODEL --task agnews --seed $s "${LENS[@]}" --quiet --out "$OUT/neuronlens-s$s"
  step aux-metrics-s$s $NEG aux-metrics --model $MODEL --task toxicity --seed $s "${AUX[@]}" --quiet --out "$OUT/aux-metrics-s$s"
done

"${PYTHON:-.venv/bin/python}" scripts/results_tables.py "$OUT" > "$OUT/RESULTS.tables.md"
echo "results: tables -> $OUT/RESULTS.tables.md"
}
main "$@"
