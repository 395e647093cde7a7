#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, runs the CUDA parity test (stories260k on CUDA in f32
# and bf16 against the CPU: probabilities, dP/da, fast vs naive sweep, generation) and times
# forward / NeurGrad / ground-truth sweep on the SmolLM2-135M shape (f32 and bf16) and on a
# Llama-2-7B shape (bf16), both random checkpoints made here, then writes one JSON
# (OUT/gpu-check.json) with the numbers, the versions and the machine. Budget: 8 minutes.
#
#   scripts/gpu-check.sh prepare   # on the build machine: builds the test and bench binaries
#                                  # and stages them, stories260k and one MCEval8K task in .gpu/
#   scripts/gpu-check.sh run       # on the GPU machine, from the checkout (with .gpu/ carried)
#   scripts/gpu-check.sh all       # both, on a GPU machine that has the Rust toolchain
#
# Why two steps: a GPU machine may have no Rust toolchain (this project's has python3 with
# torch 2.11.0+cu130 and no cargo), while the binaries built against the torch==2.11.0 PyPI
# wheel (also CUDA 13) run against any libtorch 2.11.0, found through LD_LIBRARY_PATH. The
# SmolLM2 GGUF file (98 MB) is larger than what travels to such a machine, so SmolLM2 is timed
# on a random checkpoint of its exact shape (scripts/bench/make_random_llama.py, llama-135m):
# the cost per token does not depend on the weights' values.
#
# Variables: OUT (default out/gpu-check), PYTHON (default python3 on the GPU machine; the
# project venv's python for `prepare`), NEG_GPU_REPS (paired repetitions, default 3).
# NEG_GPU_CHECK_DEVICE=cpu is a dry run of the same steps on the CPU (the SmolLM2 shape only,
# the parity test reporting its skip) to check the script itself on a machine without a GPU.
set -euo pipefail
main() {
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STAGE=.gpu
case "${1:-}" in
  prepare) prepare ;;
  run) run_check ;;
  all) prepare; run_check ;;
  *) sed -n 2,21p "$0"; exit 2 ;;
esac
}

# Path of the executable cargo builds for the given arguments (a test or bench target; benches
# are built in release already).
exe_of() {
  cargo "$@" --no-run --message-format=json 2>/dev/null |
    "${PYTHON:-.venv/bin/python}" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])' | tail -1
}

prepare() {
  [ -d ../shared/models/stories260k ] || { echo "gpu-check: ../shared/models/stories260k is missing" >&2; exit 1; }
  bash scripts/setup-libtorch.sh >/dev/null
  rm -rf "$STAGE"; mkdir -p "$STAGE/bin" "$STAGE/shared/models" "$STAGE/shared/data/mceval8k/fact"
  local loading methods
  loading=$(exe_of test --release -p neg-hooks --test loading)
  methods=$(exe_of bench --bench methods)
  [ -x "$loading" ] && [ -x "$methods" ] || { echo "gpu-check: build failed" >&2; exit 1; }
  # Without debug info the two binaries fit what travels (64 MiB in all).
  strip --strip-debug -o "$STAGE/bin/loading" "$loading"
  strip --strip-debug -o "$STAGE/bin/methods" "$methods"
  cp -r ../shared/models/stories260k "$STAGE/shared/models/"
  cp -r ../shared/data/mceval8k/fact/myriadlama "$STAGE/shared/data/mceval8k/fact/"
  cp ../shared/data/mceval8k/templates.json "$STAGE/shared/data/mceval8k/"
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  git rev-parse HEAD > "$STAGE/commit"
  du -sh "$STAGE"
  echo "gpu-check: staged in $STAGE (carry it to the GPU machine, then: scripts/gpu-check.sh run)"
}

run_check() {
  local py="${PYTHON:-python3}" out="${OUT:-out/gpu-check}" reps="${NEG_GPU_REPS:-3}"
  [ -x "$STAGE/bin/methods" ] || { echo "gpu-check: $STAGE is missing; run scripts/gpu-check.sh prepare first" >&2; exit 1; }
  mkdir -p "$out"; out=$(cd "$out" && pwd)
  local torch_lib
  torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NEG_SHARED="$PWD/$STAGE/shared" NEG_BENCH_OUT="$out" OMP_WAIT_POLICY=PASSIVE
  local device="${NEG_GPU_CHECK_DEVICE:-cuda}"
  if [ "$device" != cpu ]; then
    "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' ||
      { echo "gpu-check: torch sees no CUDA device here (NEG_GPU_CHECK_DEVICE=cpu: a dry run)" >&2; exit 3; }
  fi
  local t0=$SECONDS status=0
  # 1. Parity on CUDA (f32 and bf16) against the CPU.
  timeout 120 "$STAGE/bin/loading" --exact cuda_matches_cpu_when_available --nocapture \
    > "$out/parity.txt" 2>&1 || status=$?
  if grep -q SKIPPED "$out/parity.txt"; then status=4; fi
  echo "parity: exit $status ($((SECONDS - t0)) s)"
  # 2. Random checkpoints: the SmolLM2 shape (f32) and the Llama-2-7B shape (bf16, drawn on the GPU).
  local m135=/tmp/neg-gpu/llama-135m m7b=/tmp/neg-gpu/llama2-7b
  timeout 120 "$py" scripts/bench/make_random_llama.py --shape llama-135m --out "$m135" --force > "$out/models.txt" 2>&1
  if [ "$device" != cpu ]; then
    timeout 240 "$py" scripts/bench/make_random_llama.py --shape llama2-7b --dtype bfloat16 --device cuda --out "$m7b" --force >> "$out/models.txt" 2>&1
  fi
  echo "models: $((SECONDS - t0)) s"
  # 3. Paired timings: forward, NeurGrad (dP/da of all FF neurons, 4 answers), sweep (ground truth).
  bench() { # label model dtype timeout
    NEG_BENCH_MODEL="$2" NEG_BENCH_DEVICE="$device" NEG_BENCH_DTYPE="$3" NEG_BENCH_THREADS=8 \
      NEG_BENCH_PAIRED="$reps" NEG_BENCH_CASES=forward,neurgrad,cg,sweep_fast \
      timeout "$4" "$STAGE/bin/methods" --bench > "$out/bench-$1.txt" 2>&1 &&
      mv "$out/paired-$(basename "$2")-forward-neurgrad-cg-sweep_fast.json" "$out/paired-$1.json"
    echo "bench $1: exit $? ($((SECONDS - t0)) s)"
  }
  bench smollm2-shape-f32 "$m135" f32 90 || true
  bench smollm2-shape-bf16 "$m135" bf16 90 || true
  if [ "$device" != cpu ]; then bench llama2-7b-shape-bf16 "$m7b" bf16 200 || true; fi
  "$py" - "$out" "$status" "$((SECONDS - t0))" <<'PY'
import glob, json, os, subprocess, sys
out, status, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import torch
def smi():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
report = {
    "commit": open(".gpu/commit").read().strip() if os.path.exists(".gpu/commit") else None,
    "device": os.environ.get("NEG_GPU_CHECK_DEVICE", "cuda"),
    "gpu": smi() or (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None),
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "parity": {"test": "neg-hooks loading::cuda_matches_cpu_when_available (f32 and bf16)",
               "passed": status == 0, "exit": status},
    "timings": {},
    "seconds": seconds,
}
for f in sorted(glob.glob(os.path.join(out, "paired-*.json"))):
    label = os.path.basename(f)[len("paired-"):-len(".json")]
    report["timings"][label] = json.load(open(f))
json.dump(report, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)
print(json.dumps({k: v for k, v in report.items() if k != "timings"}, indent=1))
for label, groups in report["timings"].items():
    for group, cases in groups.items():
        if not isinstance(cases, dict):
            continue
        for case, v in cases.items():
            if isinstance(v, dict) and "median_s" in v:
                print(f"{label} {group} {case}: {v['median_s']:.4f} s, x{v['median_ratio_to_forward']:.2f} forward")
PY
  echo "gpu-check: $out/gpu-check.json ($((SECONDS - t0)) s)"
  return $status
}

main "$@"
