"""Markdown tables of docs/RESULTS.md from the outputs of scripts/results.sh.

Usage: results_tables.py OUT_DIR  (prints Markdown on stdout)

Reads OUT_DIR/<step>/results.json (and the study reports) written by the examples; steps that
have not run are listed as such. Spreads: skill probes carry a bootstrap 95% interval over test
prompts (computed by the Rust code); the NEG experiments and the studies run once per seed
(`<step>-s<seed>`: seeded prompt, record, re-split, forest and neuron draws) and are reported as
mean ± standard deviation over the seeds found.
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


def runs_of(out, prefix, name):
    """The `name` report of every seed directory `<prefix>-s<seed>` that has one, by seed."""
    runs = []
    # Directories only: each run's `<dir>.lock` file sits beside it.
    dirs = [p for p in glob.glob(os.path.join(out, prefix + "-s*")) if os.path.isdir(p)]
    for d in sorted(dirs, key=lambda p: int(p.rsplit("-s", 1)[1])):
        r = load(os.path.join(d, name))
        if r is not None:
            runs.append(r)
    return runs


def seeds_note(runs):
    return f"{len(runs)} seed{'s' if len(runs) != 1 else ''}"


def fig2_table(runs, grid_header, grid_cell):
    """Fig. 2's rows, mean ± sd over `runs`; `grid_cell(row)` shows the row's grid."""
    print(f"| R | {grid_header} | mean \\|r\\| | linear ratio (\\|r\\| ≥ 0.95) |")
    print("|---|---|---|---|")
    for i, row in enumerate(runs[0]["fig2"]):
        vals = [r["fig2"][i] for r in runs if i < len(r["fig2"])]
        print(
            f"| {grid_cell(row)} | {mean_sd([v['mean_abs_r'] for v in vals])} | "
            f"{mean_sd([v['linear_ratio'] for v in vals])} |"
        )


def linearity(out):
    runs = runs_of(out, "linearity", "results.json")
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
    fig2_table(runs, "step", lambda row: f"{row['range']} | {row['step']:.3g}")
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


def linearity_fixed(out):
    runs = runs_of(out, "linearity-fixed", "results.json")
    print("### Fig. 2 on the paper's fixed step\n")
    if not runs:
        print("_not run (`linearity-fixed-s*`)_\n")
        return
    info, cfg = runs[0]["info"], runs[0]["config"]
    print(
        f"{seeds_note(runs)}; per seed {info['prompts']['used']} prompts and "
        f"{cfg['random_neurons']} random FF neurons, swept over [-R, R] in steps of "
        f"{cfg['sweep']['fixed_step']:g} for every R ({cfg['sweep']['mode']} shifts). Mean ± sd "
        f"over seeds.\n"
    )
    fig2_table(runs, "points per side", lambda row: f"{row['range']:g} | {round(row['range'] / row['step'])}")
    print()


def estimation(out):
    runs = runs_of(out, "estimation", "results.json")
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
    runs = runs_of(out, "attribution", "results.json")
    print("### Top-K knowledge attribution (Fig. 3)\n")
    if not runs:
        print("_not run (`attribution-s*`)_\n")
        return
    r = runs[0]
    print(
        f"{seeds_note(runs)} x {r['info']['prompts']['used']} prompts (each seed its own); the K "
        f"neurons with the largest score of each method are all shifted by d (magnitude, times "
        f"the neuron's NeurGrad polarity); mean change of the answer's probability at the largest "
        f"shift d = {r['curves'][0]['shifts'][-1]:g}, mean ± sd over seeds.\n"
    )
    ks = sorted({c["k"] for c in r["curves"]})
    methods = list(dict.fromkeys(c["method"] for c in r["curves"]))
    print("| method | " + " | ".join(f"K = {k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for m in methods:
        cells = []
        for k in ks:
            vals = [
                c["mean_output_shift"][-1]
                for run in runs
                for c in run["curves"]
                if c["method"] == m and c["k"] == k
            ]
            cells.append(mean_sd_e(vals))
        print(f"| {m} | " + " | ".join(cells) + " |")
    wins = sum(
        1
        for run in runs
        if max(
            (c for c in run["curves"] if c["k"] == ks[-1]), key=lambda c: c["mean_output_shift"][-1]
        )["method"] == methods[0]
    )
    print(f"\n{methods[0]} moves the answer most at K = {ks[-1]} in {wins} of {len(runs)} seeds.")
    if r.get("unsupported"):
        print(f"\nUnsupported: {r['unsupported']}")
    print()


def distribution(out):
    runs = runs_of(out, "distribution", "results.json")
    print("### NEG distributions (Fig. 4, 11, 12)\n")
    if not runs:
        print("_not run (`distribution-s*`)_\n")
        return
    d = runs[0]["distribution"]
    print(
        f"NeurGrad of every FF neuron on {runs[0]['info']['prompts']['used']} prompts per seed "
        f"({d['count']} values), {seeds_note(runs)}, mean ± sd. Share of the total |NEG| held by "
        f"the top 1% / 10% / 50% of neurons: {mean_sd([r['top1_share'] for r in runs])} / "
        f"{mean_sd([r['top10_share'] for r in runs])} / {mean_sd([r['top50_share'] for r in runs])}; "
        f"Pearson r of the per-layer mean and variance of |NEG| (Fig. 12): "
        f"{mean_sd([r['layer_mean_var_r'] for r in runs])}.\n"
    )


def multi_neuron(out):
    runs = runs_of(out, "multi-neuron", "results.json")
    print("### Multi-neuron accumulation (Fig. 5, 14)\n")
    if not runs:
        print("_not run (`multi-neuron-s*`)_\n")
        return
    print(
        f"{seeds_note(runs)} x {runs[0]['info']['prompts']['used']} prompts; the top-n neurons by "
        f"|NeurGrad| shifted together over [0, R]; the sum of their NEGs predicts the change. r per "
        f"(prompt, target) pair, averaged (mean r), and over all points pooled (pooled r); "
        f"mean ± sd over seeds.\n"
    )
    for i, rep in enumerate(runs[0]["reports"]):
        cfg = rep["config"]
        print(f"R = {cfg['max_shift']}, step {cfg['step']}:\n")
        print("| neurons | mean r | pooled r | predicted ΔP at R | actual ΔP at R |")
        print("|---|---|---|---|---|")
        for j, p in enumerate(rep["points"]):
            pts = [r["reports"][i]["points"][j] for r in runs]
            print(
                f"| {p['neurons']} | {mean_sd([q['r_mean'] for q in pts])} | "
                f"{mean_sd([q['r_pooled'] for q in pts])} | "
                f"{mean_sd_e([q['mean_predicted_at_max'] for q in pts])} | "
                f"{mean_sd_e([q['mean_actual_at_max'] for q in pts])} |"
            )
        print()


def studies(out):
    ts = runs_of(out, "training-size", "training_size.json")
    print("### Training size (Fig. 7)\n")
    if not ts:
        print("_not run (`training-size-s*`)_\n")
    else:
        sizes = [p["n_train"] for p in ts[0]["curves"][0]["points"]]
        print(
            f"Task `{ts[0]['task']}`, {seeds_note(ts)} (each its own records, re-split and forests); "
            f"test accuracy by training prompts (neuron count chosen on valid), mean ± sd.\n"
        )
        print("| probe | " + " | ".join(f"n = {n}" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for i, c in enumerate(ts[0]["curves"]):
            cells = [
                mean_sd([r["curves"][i]["points"][j]["evaluation"]["test_accuracy"] for r in ts])
                for j in range(len(sizes))
            ]
            print(f"| {c['probe']} | " + " | ".join(cells) + " |")
        print()
    rb = runs_of(out, "robustness", "robustness.json")
    print("### Robustness (Fig. 8)\n")
    if not rb:
        print("_not run (`robustness-s*`)_\n")
    else:
        m = rb[0]["matrix"]
        print(
            f"Task `{rb[0]['task']}`, probe {rb[0]['probe']}, {seeds_note(rb)}: neurons selected in "
            f"the source context, accuracy on the target context, mean ± sd (the target's own "
            f"neurons, mean, in brackets); chance {m['chance']:.2f}.\n"
        )
        ctx = m["contexts"]
        print("| source \\ target | " + " | ".join(ctx) + " |")
        print("|---|" + "---|" * len(ctx))
        for src in ctx:
            cells = []
            for tgt in ctx:
                cs = [
                    next(c for c in r["matrix"]["cells"] if c["source"] == src and c["target"] == tgt)
                    for r in rb
                ]
                own = statistics.mean(c["accuracy_target_on_target"] for c in cs)
                cells.append(f"{mean_sd([c['accuracy_source_on_target'] for c in cs])} ({own:.3f})")
            print(f"| {src} | " + " | ".join(cells) + " |")
        print()
    sb = runs_of(out, "substitutability", "substitutability.json")
    print("### Substitutability (Fig. 9)\n")
    if not sb:
        print("_not run (`substitutability-s*`)_\n")
    else:
        print(
            f"Task `{sb[0]['task']}`, {seeds_note(sb)}; test accuracy of windows of ranked neurons "
            f"(chance {sb[0]['chance']:.2f}), mean ± sd over seeds.\n"
        )
        for i, pr in enumerate(sb[0]["probes"]):
            wins = [r["probes"][i]["windows"] for r in sb]
            print(
                f"- {pr['probe']}, windows of {pr['window']} ({len(wins[0])} windows): first "
                f"{mean_sd([w[0]['test_accuracy'] for w in wins])}, mean of all "
                f"{mean_sd([statistics.mean(x['test_accuracy'] for x in w) for w in wins])}, last "
                f"{mean_sd([w[-1]['test_accuracy'] for w in wins])}"
            )
        print()
    tr = runs_of(out, "tree-shape", "tree_shape.json")
    print("### Tree shape\n")
    if not tr:
        print("_not run (`tree-shape-s*`)_\n")
    else:
        bests = [max(r["points"], key=lambda p: p["valid_accuracy"]) for r in tr]
        shapes = ", ".join(f"2^{b['log2_trees']} x 2^{b['log2_depth']}" for b in bests)
        print(
            f"Task `{tr[0]['task']}`, {seeds_note(tr)}; {len(tr[0]['points'])} forest shapes (log2 "
            f"trees + log2 depth <= {tr[0]['max_sum']}); the shape best on valid (trees x depth, per "
            f"seed: {shapes}) has test accuracy {mean_sd([b['test_accuracy'] for b in bests])}.\n"
        )


def lens_and_aux(out):
    nl = runs_of(out, "neuronlens", "neuronlens.json")
    print("### NeuronLens\n")
    if not nl:
        print("_not run (`neuronlens-s*`)_\n")
    else:
        n0 = nl[0]
        print(
            f"Task `{n0['task']}`, {n0['site']} units of layers {n0['layers']}, tau {n0['tau']}, "
            f"top {n0['fraction']:.0%} salient units per class; {seeds_note(nl)}, each fitted on "
            f"{n0['n_fit_rendered']} prompts (fit on the {n0['fit_used']} ones; their counts per seed: "
            f"{', '.join(str(r['n_fit_correct']) for r in nl)}), evaluated on {n0['n_eval']}. Masking the "
            f"class's ranges (or whole units) and its effect on the class's accuracy and on the other "
            f"classes', mean ± sd over seeds:\n"
        )
        print("| class | target drop, range | target drop, unit | others kept, range | others kept, unit |")
        print("|---|---|---|---|---|")
        for i, c in enumerate(n0["classes"]):
            cs = [r["classes"][i] for r in nl]
            cells = [
                mean_sd([x.get(k) for x in cs])
                for k in ("range_target_drop", "neuron_target_drop", "range_complement_retained", "neuron_complement_retained")
            ]
            print(f"| {c['option']} | " + " | ".join(cells) + " |")
        print(
            f"\nRange overlap between classes per unit, mean: "
            f"{mean_sd([r['overlap'].get('mean') for r in nl])}.\n"
        )
    ax = runs_of(out, "aux-metrics", "aux_metrics.json")
    print("### Auxiliary metrics\n")
    if not ax:
        print("_not run (`aux-metrics-s*`)_\n")
        return
    a0 = ax[0]
    test = "Student t p-values" if a0.get("test") == "student_t" else f"{a0['permutations']} permutations per p-value"
    print(
        f"Task `{a0['task']}`, {seeds_note(ax)} x {a0['n_prompts']} prompts (model accuracy "
        f"{mean_sd([r['accuracy'] for r in ax])}) and {a0['n_generations']} generations; {test}, "
        f"Benjamini-Hochberg at {a0['alpha']} over all neurons. Counts per seed (the multiple-choice "
        f"prompts are each seed's own; the generations start from the same built-in story openings "
        f"and are greedy, so their rows repeat across seeds).\n"
    )
    print("| metric | neurons significant, Pearson | Spearman | with the metric shuffled (Pearson / Spearman) | strongest \\|r\\| |")
    print("|---|---|---|---|---|")
    names = [m["metric"] for m in a0["multiple_choice"] + a0["generation"]]
    for name in names:
        ms = [next((m for m in r["multiple_choice"] + r["generation"] if m["metric"] == name), None) for r in ax]
        ms = [m for m in ms if m is not None and not m.get("skipped")]
        if not ms:
            print(f"| {name} | skipped | | | |")
            continue
        per = lambda k: ", ".join(str(m[k]) for m in ms)
        null = ", ".join(f"{m['null_significant'][0]}/{m['null_significant'][1]}" for m in ms if "null_significant" in m)
        print(
            f"| {name} | {per('significant_pearson')} | {per('significant_spearman')} | {null} | "
            f"{mean_sd([abs(m['top'][0]['pearson']) for m in ms if m['top']])} |"
        )
    print()


def main(out):
    print(f"<!-- generated by scripts/results_tables.py from {out} -->\n")
    print("## Skill neurons on MCEval8K (Tables 3, 8, 9)\n")
    skill_table(out, "skill-zero-leakfree", "Zero-shot, leak-free splits")
    skill_table(out, "skill-zero-published", "Zero-shot, published splits")
    skill_table(out, "skill-few-leakfree", "Few-shot, leak-free splits")
    print("## NEG experiments on MyriadLAMA facts\n")
    linearity(out)
    linearity_fixed(out)
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
