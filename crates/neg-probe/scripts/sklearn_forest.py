#!/usr/bin/env python3
"""Reference Tree-Probe: scikit-learn's RandomForestClassifier on a task written by neg-probe.

Usage: sklearn_forest.py TASK.json [--seeds 0,1,2] [--time] [--n-jobs 1]

TASK.json: {"x": [[u8, ...], ...]  (samples x features, row-major),
            "y": [int, ...], "train": [row, ...], "test": [row, ...],
            "n_trees": 100, "max_depth": null}
Prints one JSON object: test accuracy per seed and their mean; with --time, the fit seconds
per seed for n_jobs=1 and n_jobs=-1 (all cores), and the process CPU seconds, instead of
accuracy.
"""
import argparse
import json
import sys
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--time", action="store_true", help="time fits with n_jobs=1 and -1")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with open(args.task) as f:
        task = json.load(f)
    x = np.asarray(task["x"], dtype=np.uint8)
    y = np.asarray(task["y"], dtype=np.int64)
    train = np.asarray(task["train"], dtype=np.int64)
    test = np.asarray(task["test"], dtype=np.int64)
    n_trees = int(task.get("n_trees", 100))
    max_depth = task.get("max_depth")
    out = {"n_samples": int(x.shape[0]), "n_features": int(x.shape[1]),
           "n_train": int(train.size), "n_test": int(test.size), "n_trees": n_trees}
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.time:
        import os
        out["cpu_count"] = os.cpu_count()
        for n_jobs in (1, -1):
            secs, cpu = [], []
            for r in range(args.repeats):
                clf = RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth,
                                             n_jobs=n_jobs, random_state=r)
                t0, c0 = time.perf_counter(), time.process_time()
                clf.fit(x[train], y[train])
                secs.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            out[f"fit_seconds_n_jobs_{n_jobs}"] = secs
            out[f"fit_seconds_n_jobs_{n_jobs}_min"] = min(secs)
            # CPU time of this process (all its threads); wall time counts other jobs too on
            # a shared machine. Meaningful for n_jobs=1.
            out[f"fit_cpu_seconds_n_jobs_{n_jobs}"] = cpu
    else:
        accs = []
        for s in seeds:
            clf = RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth,
                                         n_jobs=-1, random_state=s)
            clf.fit(x[train], y[train])
            accs.append(float((clf.predict(x[test]) == y[test]).mean()))
        out["accuracies"] = accs
        out["mean_accuracy"] = float(np.mean(accs))
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
