#!/usr/bin/env python3
"""Python reference benchmark: a no-grad forward and NeurGrad the paper's way, in transformers.

The paper's code computes NeurGrad with forward hooks on each layer's FF neurons and one
`torch.autograd.grad` call per answer option. This script does the same, on the FF neuron as
defined in docs (the input of `mlp.down_proj`, captured with a forward pre-hook at the last
prompt token, kept in the autograd graph), for the prompts and target token ids the
Rust benchmark wrote (`target/bench-models/prompts-<model>.json`), on the same model files,
with the same number of threads. Prompts are processed one at a time, as the paper's code does;
the batch time is the sum over the prompts of one repetition.

Prints one JSON object: medians in seconds ("one": the first prompt, "batchP": all P prompts)
for "forward" and "neurgrad", the set-up, and the agreement with the Rust side (probabilities
and NeurGrad of the first prompt at 16 neurons the Rust bench recorded in the prompts file).

Usage (from the workspace root, after `cargo bench --bench methods` has written the prompts):
    .venv/bin/python scripts/bench/reference_bench.py \
        --prompts target/bench-models/prompts-llama-135m.json [--reps 5] [--threads N]
"""
import argparse
import json
import statistics
import sys
import time


def fail(msg):
    print(f"reference_bench.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


class DownProjLeaves:
    """Forward pre-hooks on every layer's down_proj: when `active`, the last position's input
    is routed through a tensor of its own (the FF activations a[l]) that autograd can
    differentiate against."""

    def __init__(self, model):
        self.active = False
        self.leaves = {}
        layers = model.model.layers
        self.count = len(layers)
        for i, layer in enumerate(layers):
            layer.mlp.down_proj.register_forward_pre_hook(self._hook(i))

    def _hook(self, layer):
        def hook(_module, args):
            if not self.active:
                return None
            import torch

            (x,) = args
            # A clone that stays in the graph (not a detached leaf): dP/da[l] must include the
            # paths through the later layers' activations at the same position, which a
            # detached leaf per layer would cut.
            act = x[:, -1, :].clone()
            if not act.requires_grad:
                act.requires_grad_(True)
            self.leaves[layer] = act
            return (torch.cat([x[:, :-1, :], act[:, None, :]], dim=1),)

        return hook


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", required=True, help="prompts JSON written by the Rust bench")
    ap.add_argument("--model", help="model directory (default: the one in the prompts file)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the prompts file's)")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per case")
    args = ap.parse_args()

    try:
        with open(args.prompts) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {args.prompts}: {e}")
    prompts = spec.get("prompts") or fail(f"{args.prompts} has no prompts")
    model_dir = args.model or spec.get("model_dir") or fail("no model directory")
    threads = args.threads or spec.get("threads") or fail("no thread count")
    if args.reps < 1:
        fail("--reps must be at least 1")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hooks = DownProjLeaves(model)
    ids = []
    for i, p in enumerate(prompts):
        t = tok(p["text"], return_tensors="pt").input_ids
        if t.shape[1] != p["tokens"]:
            fail(f"prompt {i}: {t.shape[1]} tokens here, {p['tokens']} on the Rust side")
        ids.append(t)

    def forward(i):
        with torch.no_grad():
            logits = model(input_ids=ids[i]).logits[0, -1]
            return torch.softmax(logits, dim=-1)[prompts[i]["targets"]]

    def neurgrad(i):
        hooks.active = True
        hooks.leaves.clear()
        probs = torch.softmax(model(input_ids=ids[i]).logits[0, -1], dim=-1)
        hooks.active = False
        leaves = [hooks.leaves[l] for l in range(hooks.count)]
        acts = torch.stack([leaf[0].detach() for leaf in leaves])  # [L, N]
        sign = torch.where(acts > 0, 1.0, -1.0)
        out = []
        for t in prompts[i]["targets"]:
            grads = torch.autograd.grad(probs[t], leaves, retain_graph=True)
            out.append(torch.stack([g[0] for g in grads]) * sign)  # [L, N]
        return torch.stack(out)  # [T, L, N]

    def time_case(fn, indices):
        fn(indices[0])  # warm-up
        samples = []
        for _ in range(args.reps):
            start = time.perf_counter()
            for i in indices:
                fn(i)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples), samples

    everything = list(range(len(prompts)))
    batch = f"batch{len(prompts)}"
    medians, samples = {}, {}
    for name, fn in (("forward", forward), ("neurgrad", neurgrad)):
        for group, idx in (("one", [0]), (batch, everything)):
            key = f"{group}/{name}"
            medians[key], samples[key] = time_case(fn, idx)
            print(f"{key}: median {medians[key]:.4f} s", file=sys.stderr)

    # Same numbers as the Rust side: probabilities and NeurGrad of the first prompt at the
    # neurons the Rust bench recorded.
    check = spec.get("check") or fail(f"{args.prompts} has no check values")
    g = neurgrad(0)
    ours = [[g[j, l, n].item() for l, n in check["neurons"]] for j in range(g.shape[0])]
    theirs = check["neurgrad"]
    scale = max(abs(v) for row in theirs for v in row) or 1.0
    agreement = {
        "probs_max_abs_diff": max(abs(a - b) for a, b in zip(forward(0).tolist(),
                                                              check["probs"])),
        "neurgrad_max_abs_diff_over_max_abs": max(
            abs(a - b) for ra, rb in zip(ours, theirs) for a, b in zip(ra, rb)) / scale,
    }
    print(f"agreement with the Rust side: {agreement}", file=sys.stderr)

    print(json.dumps({
        "model": spec.get("model"),
        "model_dir": model_dir,
        "threads": threads,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "prompt_tokens": [p["tokens"] for p in prompts],
        "reps": args.reps,
        "agreement_with_rust": agreement,
        "median_s": medians,
        "samples_s": samples,
    }, indent=1))


if __name__ == "__main__":
    main()
