#!/usr/bin/env python3
"""Tree-Probe vs scikit-learn on a real feature file (e.g. one written by `skill_probe`).

Usage: compare_real_features.py FEATURES.safetensors [--seeds 20]
           [--bin target/release/examples/probe_features]

Fits scikit-learn's RandomForestClassifier (100 trees, defaults) on the file's `option_index`
of the train split and scores the test split, for each seed; runs the `probe_features`
example with `--probe tree --seed S` on the same file; prints both mean test accuracies and
their difference as JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file
from sklearn.ensemble import RandomForestClassifier


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("features")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--bin", default="target/release/examples/probe_features")
    args = ap.parse_args()
    d = load_file(args.features)
    x, y, split = d["option_index"], d["labels"], d["split"]
    tr, te = split == 0, split == 2
    sk = []
    for s in range(args.seeds):
        clf = RandomForestClassifier(n_estimators=100, random_state=s, n_jobs=-1)
        clf.fit(x[tr], y[tr])
        sk.append(float((clf.predict(x[te]) == y[te]).mean()))
    ours = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(args.seeds):
            out = os.path.join(tmp, f"seed{s}")
            subprocess.run([args.bin, "--features", args.features, "--probe", "tree",
                            "--seed", str(s), "--out", out], check=True, capture_output=True)
            with open(os.path.join(out, "probe.json")) as f:
                ours.append(json.load(f)["test_accuracy"])
    res = {"features": args.features, "n_prompts": int(x.shape[0]), "n_neurons": int(x.shape[1]),
           "n_train": int(tr.sum()), "n_test": int(te.sum()), "seeds": args.seeds,
           "neg_probe_mean": float(np.mean(ours)), "sklearn_mean": float(np.mean(sk)),
           "neg_probe_std": float(np.std(ours)), "sklearn_std": float(np.std(sk))}
    res["difference"] = res["neg_probe_mean"] - res["sklearn_mean"]
    json.dump(res, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
