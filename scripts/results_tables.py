"""Markdown tables of docs/RESULTS.md from the outputs of scripts/results.sh.

Usage: results_tables.py OUT_DIR  (prints Markdown on stdout)

Reads OUT_DIR/<step>/results.json (and the study reports) written by the examples; steps that
have not run are listed as such. Spreads: skill probes carry a bootstrap 95% interval over test
prompts (computed by the Rust code); the NEG experiments run once per seed (seeded prompt and
neuron draws) and are reported as mean ± standard deviation over the seeds found.
"""
import glob
import json
import os
import statistics
import sys

METHODS = ["rand", "lmprob", "polar", "magn", "tree", "act"]
NAMES = {"rand": "Rand", "lmprob": "LM-Prob", "polar": "Polar", "magn": "Magn", "tree": "Tree", "act": "Act"}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def mean_sd_e(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2e}"
    return f"{statistics.mean(values):.2e} ± {statistics.stdev(values):.1e}"


def skill_table(out, step, title):
    r = load(os.path.join(out, step, "results.json"))
    print(f"### {title}\n")
    if r is None:
        print(f"_not run (`{step}`)_\n")
        return
    cfg = r["config"]
    print(
        f"Model `{r['model']}`, {cfg['shots']}-shot prompts, {cfg['splits']} splits, "
        f"{cfg['sizes']['train']}/{cfg['sizes']['valid']}/{cfg['sizes']['test']} train/valid/test "
        f"prompts per task, seed {cfg['seed']}. Test accuracy with its bootstrap 95% interval "
        f"(2000 resamples of the test prompts); neuron counts chosen on valid.\n"
    )
    print("| task | chance | " + " | ".join(NAMES[m] for m in METHODS) + " | best probe − LM-Prob |")
    print("|---|---|" + "---|" * len(METHODS) + "---|")
    for t in r["tasks"]:
        by = {m["method"]: m for m in t["methods"]}
        cells = []
        for m in METHODS:
            row = by.get(m)
            if row is None:
                cells.append("")
                continue
            ci = row.get("test_ci95")
            ci = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
            cells.append(f"{row['test_accuracy']:.3f}{ci}")
        best = max(by[m]["test_accuracy"] for m in ("polar", "magn", "tree", "act") if m in by)
        gap = best - by["lmprob"]["test_accuracy"] if "lmprob" in by else float("nan")
        chance = 1.0 / len(t["answers"]) if t["answers"] else float("nan")
        print(f"| {t['task']} (n_test {t['n_test']}) | {chance:.2f} | " + " | ".join(cells) + f" | {gap:+.3f} |")
    if r.get("warnings"):
        print("\nWarnings of this run: " + "; ".join(r["warnings"]))
    # skill-probe keeps wall-clock times out of results.json (byte-identical reruns).
    timings = load(os.path.join(out, step, "timings.json")) or {}
    print(f"\nWall time {timings.get('seconds', float('nan')):.0f} s.\n")


def seeds_of(out, prefix):
    runs = []
    # Directories only: each run's `<dir>.lock` file sits beside it.
    for d in sorted(p for p in glob.glob(os.path.join(out, prefix + "-s*")) if os.path.isdir(p)):
        r = load(os.path.join(d, "results.json"))
        if r is not None:
            runs.append(r)
    return runs


def linearity(out):
    runs = seeds_of(out, "linearity")
    print("### Linearity (Fig. 2, Table 1, Table 5)\n")
    if not runs:
        print("_not run (`linearity-s*`)_\n")
        return
    info, cfg = runs[0]["info"], runs[0]["config"]
    print(
        f"{len(runs)} seeds; per seed {info['prompts']['used']} MyriadLAMA prompts (of "
        f"{info['prompts']['single_token']} with a single-token answer for this tokenizer, of "
        f"{info['prompts']['total']}) and {cfg['random_neurons']} random FF neurons, swept over "
        f"[-R, R] with {cfg['sweep']['points_per_side']} points per side ({cfg['sweep']['mode']} "
        f"shifts). Mean ± sd over seeds.\n"
    )
    print("| R | step | mean \\|r\\| | linear ratio (\\|r\\| ≥ 0.95) |")
    print("|---|---|---|---|")
    for i, row in enumerate(runs[0]["fig2"]):
        vals = [r["fig2"][i] for r in runs if i < len(r["fig2"])]
        print(
            f"| {row['range']} | {row['step']:.3g} | {mean_sd([v['mean_abs_r'] for v in vals])} | "
            f"{mean_sd([v['linear_ratio'] for v in vals])} |"
        )
    print(
        f"\nTable 1 at R = {cfg['sweep']['linear_range']}: linear ratio "
        f"{mean_sd([r['linear_ratio'] for r in runs])}, positive "
        f"{mean_sd([r['positive_ratio'] for r in runs])}, negative "
        f"{mean_sd([r['negative_ratio'] for r in runs])}.\n"
    )
    t5 = [r.get("table5") for r in runs if r.get("table5")]
    if t5:
        keys = [k for k, v in t5[0].items() if isinstance(v, (int, float))]
        print("Table 5 (top-|NeurGrad| neurons per prompt): " + ", ".join(
            f"{k} {mean_sd([t.get(k) for t in t5])}" for k in keys) + ".\n")


def estimation(out):
    runs = seeds_of(out, "estimation")
    print("### NEG estimation (Table 2)\n")
    if not runs:
        print("_not run (`estimation-s*`)_\n")
        return
    info, cfg = runs[0]["info"], runs[0]["config"]
    print(
        f"{len(runs)} seeds; per seed {info['prompts']['used']} prompts x {cfg['neurons']} random "
        f"neurons, ground truth by sweeps over [-{cfg['sweep']['range']}, {cfg['sweep']['range']}] "
        f"step {cfg['sweep']['step']}. Mean ± sd over seeds.\n"
    )
    print("| method | Pearson r | Spearman | MAE | seconds / prompt |")
    print("|---|---|---|---|---|")
    names = [row["method"] for row in runs[0]["rows"]]
    for name in names:
        rows = [next((x for x in r["rows"] if x["method"] == name), None) for r in runs]
        rows = [x for x in rows if x]
        print(
            f"| {name} | {mean_sd([x['r'] for x in rows])} | {mean_sd([x['spearman'] for x in rows])} | "
            f"{mean_sd_e([x['mae'] for x in rows])} | {mean_sd([x['seconds_per_prompt'] for x in rows])} |"
        )
    print(f"\nGround-truth sweep: {mean_sd([r['sweep_seconds_per_prompt'] for r in runs])} s per prompt.\n")


def attribution(out):
    r = load(os.path.join(out, "attribution", "results.json"))
    print("### Top-K knowledge attribution (Fig. 3)\n")
    if r is None:
        print("_not run (`attribution`)_\n")
        return
    info = r["info"]
    print(
        f"{info['prompts']['used']} prompts; the K neurons with the largest score of each "
        f"method are all shifted by d (magnitude, times the neuron's NeurGrad polarity); mean "
        f"change of the answer's probability at the largest shift (and at the smallest).\n"
    )
    ks = sorted({c["k"] for c in r["curves"]})
    methods = list(dict.fromkeys(c["method"] for c in r["curves"]))
    print("| method | " + " | ".join(f"K = {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for m in methods:
        cells = []
        for k in ks:
            c = next((c for c in r["curves"] if c["method"] == m and c["k"] == k), None)
            cells.append(
                f"{c['mean_output_shift'][-1]:+.2e} (d={c['shifts'][-1]:g}; {c['mean_output_shift'][0]:+.1e} at d={c['shifts'][0]:g})"
                if c else ""
            )
        print(f"| {m} | " + " | ".join(cells) + " |")
    if r.get("unsupported"):
        print(f"\nUnsupported: {r['unsupported']}")
    print()


def distribution(out):
    r = load(os.path.join(out, "distribution", "results.json"))
    print("### NEG distributions (Fig. 4, 11, 12)\n")
    if r is None:
        print("_not run (`distribution`)_\n")
        return
    d = r["distribution"]
    print(
        f"NeurGrad of every FF neuron on {r['info']['prompts']['used']} prompts ({d['count']} "
        f"values). Share of the total |NEG| held by the top 1% / 10% / 50% of neurons: "
        f"{r['top1_share']:.3f} / {r['top10_share']:.3f} / {r['top50_share']:.3f}; Pearson r of the "
        f"per-layer mean and variance of |NEG| (Fig. 12): "
        f"{'n/a' if r['layer_mean_var_r'] is None else format(r['layer_mean_var_r'], '.3f')}.\n"
    )


def multi_neuron(out):
    r = load(os.path.join(out, "multi-neuron", "results.json"))
    print("### Multi-neuron accumulation (Fig. 5, 14)\n")
    if r is None:
        print("_not run (`multi-neuron`)_\n")
        return
    print(
        f"{r['info']['prompts']['used']} prompts; the top-n neurons by |NeurGrad| shifted together "
        f"over [0, R]; the sum of their NEGs predicts the change. r per (prompt, target) pair, "
        f"averaged (mean r), and over all points pooled (pooled r).\n"
    )
    for rep in r["reports"]:
        cfg = rep["config"]
        print(f"R = {cfg['max_shift']}, step {cfg['step']}:\n")
        print("| neurons | mean r | pooled r | predicted ΔP at R | actual ΔP at R | pairs |")
        print("|---|---|---|---|---|---|")
        for p in rep["points"]:
            print(
                f"| {p['neurons']} | {p['r_mean']:.4f} | {p['r_pooled']:.4f} | "
                f"{p['mean_predicted_at_max']:.2e} | {p['mean_actual_at_max']:.2e} | {p['pairs']} |"
            )
        print()


def studies(out):
    ts = load(os.path.join(out, "training-size", "training_size.json"))
    print("### Training size (Fig. 7)\n")
    if ts is None:
        print("_not run (`training-size`)_\n")
    else:
        sizes = [p["n_train"] for p in ts["curves"][0]["points"]]
        print(f"Task `{ts['task']}`; test accuracy by training prompts (neuron count chosen on valid).\n")
        print("| probe | " + " | ".join(f"n = {n}" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for c in ts["curves"]:
            print(f"| {c['probe']} | " + " | ".join(f"{p['evaluation']['test_accuracy']:.3f}" for p in c["points"]) + " |")
        print()
    rb = load(os.path.join(out, "robustness", "robustness.json"))
    print("### Robustness (Fig. 8)\n")
    if rb is None:
        print("_not run (`robustness`)_\n")
    else:
        m = rb["matrix"]
        print(
            f"Task `{rb['task']}`, probe {rb['probe']}: neurons selected in the source context, "
            f"accuracy on the target context (target's own neurons in brackets); chance {m['chance']:.2f}.\n"
        )
        ctx = m["contexts"]
        print("| source \\ target | " + " | ".join(ctx) + " |")
        print("|---|" + "---|" * len(ctx))
        for src in ctx:
            cells = []
            for tgt in ctx:
                c = next(c for c in m["cells"] if c["source"] == src and c["target"] == tgt)
                cells.append(f"{c['accuracy_source_on_target']:.3f} ({c['accuracy_target_on_target']:.3f})")
            print(f"| {src} | " + " | ".join(cells) + " |")
        print()
    sb = load(os.path.join(out, "substitutability", "substitutability.json"))
    print("### Substitutability (Fig. 9)\n")
    if sb is None:
        print("_not run (`substitutability`)_\n")
    else:
        print(f"Task `{sb['task']}`; test accuracy of windows of ranked neurons (chance {sb['chance']:.2f}).\n")
        for pr in sb["probes"]:
            accs = [w["test_accuracy"] for w in pr["windows"]]
            print(
                f"- {pr['probe']}, windows of {pr['window']}: first {accs[0]:.3f}, mean of all "
                f"{len(accs)} {statistics.mean(accs):.3f}, last {accs[-1]:.3f}"
            )
        print()
    tr = load(os.path.join(out, "tree-shape", "tree_shape.json"))
    print("### Tree shape\n")
    if tr is None:
        print("_not run (`tree-shape`)_\n")
    else:
        best = max(tr["points"], key=lambda p: p["valid_accuracy"])
        print(
            f"Task `{tr['task']}`; {len(tr['points'])} forest shapes (log2 trees + log2 depth <= "
            f"{tr['max_sum']}); best on valid: 2^{best['log2_trees']} trees of depth "
            f"2^{best['log2_depth']}, test accuracy {best['test_accuracy']:.3f}.\n"
        )


def lens_and_aux(out):
    nl = load(os.path.join(out, "neuronlens", "neuronlens.json"))
    print("### NeuronLens\n")
    if nl is None:
        print("_not run (`neuronlens`)_\n")
    else:
        print(
            f"Task `{nl['task']}`, {nl['site']} units of layers {nl['layers']}, tau {nl['tau']}, "
            f"top {nl['fraction']:.0%} salient units per class; fitted on {nl['n_fit_rendered']} "
            f"prompts ({nl['n_fit_correct']} answered correctly, fit on {nl['fit_used']}), "
            f"evaluated on {nl['n_eval']}. Masking the class's ranges (or whole units) and its "
            f"effect on the class's accuracy and on the other classes':\n"
        )
        print("| class | target drop, range | target drop, unit | others kept, range | others kept, unit |")
        print("|---|---|---|---|---|")
        f3 = lambda v: "n/a" if v is None else f"{v:.3f}"
        for c in nl["classes"]:
            print(
                f"| {c['option']} | {f3(c.get('range_target_drop'))} | {f3(c.get('neuron_target_drop'))} | "
                f"{f3(c.get('range_complement_retained'))} | {f3(c.get('neuron_complement_retained'))} |"
            )
        o = nl["overlap"]
        print(f"\nRange overlap between classes per unit: mean {f3(o.get('mean'))}, median {f3(o.get('median'))}.\n")
    ax = load(os.path.join(out, "aux-metrics", "aux_metrics.json"))
    print("### Auxiliary metrics\n")
    if ax is None:
        print("_not run (`aux-metrics`)_\n")
        return
    print(
        f"Task `{ax['task']}`, {ax['n_prompts']} prompts (model accuracy {ax['accuracy']:.3f}); "
        f"{ax['permutations']} permutations per p-value, Benjamini-Hochberg at {ax['alpha']}.\n"
    )
    print("| metric | neurons significant (Pearson / Spearman) | strongest |r| |")
    print("|---|---|---|")
    for m in ax["multiple_choice"] + ax["generation"]:
        top = m.get("top") or []
        best = f"{abs(top[0]['pearson']):.3f} (L{top[0]['layer']} N{top[0]['neuron']})" if top else m.get("skipped", "")
        print(f"| {m['metric']} | {m['significant_pearson']} / {m['significant_spearman']} | {best} |")
    print()


def main(out):
    print(f"<!-- generated by scripts/results_tables.py from {out} -->\n")
    print("## Skill neurons on MCEval8K (Tables 3, 8, 9)\n")
    skill_table(out, "skill-zero-leakfree", "Zero-shot, leak-free splits")
    skill_table(out, "skill-zero-published", "Zero-shot, published splits")
    skill_table(out, "skill-few-leakfree", "Few-shot, leak-free splits")
    print("## NEG experiments on MyriadLAMA facts\n")
    linearity(out)
    estimation(out)
    attribution(out)
    distribution(out)
    multi_neuron(out)
    print("## Skill-neuron studies, NeuronLens, auxiliary metrics\n")
    studies(out)
    lens_and_aux(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
