#!/usr/bin/env python3
"""Markdown tables of the method benchmarks: medians and the ratios docs/PERFORMANCE.md reports.

Reads, for one model label (stories260k, llama-135m, ...):
  - criterion's medians, target/criterion/<label>_<group>/<case>/new/estimates.json, or with
    --paired, the interleaved run's target/bench-models/paired-<label>.json;
  - optionally the Python reference's JSON (scripts/bench/reference_bench.py output).

Usage (from the workspace root):
    .venv/bin/python scripts/bench/summarize.py --model llama-135m [--paired] \
        [--python target/bench-models/python-llama-135m.json]
"""
import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORDER = ["forward", "neurgrad", "cg", "ig_m20", "lpi", "sweep_fast", "sweep_naive"]


def fail(msg):
    print(f"summarize.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def criterion_medians(label):
    out = {}
    for path in glob.glob(os.path.join(ROOT, "target", "criterion", f"{label}_*", "*", "new",
                                       "estimates.json")):
        parts = path.split(os.sep)
        group = parts[-4][len(label) + 1:]
        case = parts[-3]
        with open(path) as f:
            out.setdefault(group, {})[case] = json.load(f)["median"]["point_estimate"] / 1e9
    return out


def paired_medians(label):
    path = os.path.join(ROOT, "target", "bench-models", f"paired-{label}.json")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    return {g: {c: v["median_s"] for c, v in cases.items()} for g, cases in data.items()}, data


def fmt(x):
    if x is None:
        return "n/a"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--paired", action="store_true")
    ap.add_argument("--python")
    args = ap.parse_args()

    if args.paired:
        med, raw = paired_medians(args.model)
    else:
        med, raw = criterion_medians(args.model), None
    if not med:
        fail(f"no results for {args.model}")
    groups = sorted(med, key=lambda g: (g != "one", g))
    py = None
    if args.python:
        with open(args.python) as f:
            py = json.load(f)["median_s"]

    print(f"| case | " + " | ".join(f"{g} median | {g} / forward" for g in groups) + " |")
    print("|---|" + "---|---|" * len(groups))
    for case in ORDER:
        if not any(case in med[g] for g in groups):
            continue
        cells = []
        for g in groups:
            m, f = med[g].get(case), med[g].get("forward")
            ratio = None
            if raw is not None and case in raw[g]:
                ratio = raw[g][case]["median_ratio_to_forward"]
            elif m is not None and f:
                ratio = m / f
            cells += [fmt(m), "n/a" if ratio is None else f"{ratio:.2f}x"]
        print(f"| {case} | " + " | ".join(cells) + " |")
    if py:
        for name in ("forward", "neurgrad"):
            cells = []
            for g in groups:
                m, f = py.get(f"{g}/{name}"), py.get(f"{g}/forward")
                cells += [fmt(m), "n/a" if m is None or not f else f"{m / f:.2f}x"]
            print(f"| python {name} | " + " | ".join(cells) + " |")

    print()
    for g in groups:
        m = med[g]
        lines = []
        if "neurgrad" in m and "forward" in m:
            lines.append(f"NeurGrad / forward = {m['neurgrad'] / m['forward']:.2f}")
        if py and f"{g}/neurgrad" in py and "neurgrad" in m:
            lines.append(f"Python NeurGrad / Rust NeurGrad = {py[g + '/neurgrad'] / m['neurgrad']:.2f}")
        if py and f"{g}/forward" in py and "forward" in m:
            lines.append(f"Python forward / Rust forward = {py[g + '/forward'] / m['forward']:.2f}")
        if "sweep_naive" in m and "sweep_fast" in m:
            lines.append(f"naive / optimised sweep = {m['sweep_naive'] / m['sweep_fast']:.1f}")
        if "ig_m20" in m and "neurgrad" in m:
            lines.append(f"IG / NeurGrad = {m['ig_m20'] / m['neurgrad']:.1f}")
        if "lpi" in m and "neurgrad" in m:
            lines.append(f"LPI / NeurGrad = {m['lpi'] / m['neurgrad']:.1f}")
        print(f"- {args.model} {g}: " + "; ".join(lines))


if __name__ == "__main__":
    main()
