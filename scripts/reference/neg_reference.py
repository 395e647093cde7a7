#!/usr/bin/env python3
"""Independent reference for NeurGrad and ground-truth NEG, written against Hugging Face
transformers (not against the Rust code).

FF neuron = the input of layer l's `mlp.down_proj` at the prompt's last token. It is captured
and patched with a forward pre-hook on `down_proj`; dP/da comes from torch.autograd.

Usage:
    neg_reference.py --model DIR|FILE.gguf --spec spec.json --out result.json

spec.json:
    {"prompts": [{"prompt": "...", "targets": [token ids]}, ...],
     "neurons": [[layer, neuron], ...],
     "range": 0.5, "step": 0.05, "mode": "magnitude" | "additive",
     "dtype": "float64" | "float32"}

result.json (P prompts, T targets, K neurons, S shifts):
    token_ids [P][*], probs [P][T], activations [P][K], cg [P][T][K], neurgrad [P][T][K],
    shifts [S], delta_probs [P][T][K][S], neg [P][T][K], r [P][T][K]

Shift grid: d = k * step for integer k with |d| <= range (zero included), as in neg-core.
Magnitude mode: a -> a + d * sign(a), sign(a) = 1 if a > 0 else -1.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def fail(msg):
    print(f"neg_reference.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def shift_grid(rng, step):
    if not (math.isfinite(rng) and rng > 0):
        fail(f"range must be > 0, got {rng}")
    if not (math.isfinite(step) and step > 0):
        fail(f"step must be > 0, got {step}")
    n = int(math.floor(rng / step + 1e-6))
    return [k * step for k in range(-n, n + 1)]


class DownProjHooks:
    """Pre-hooks on every layer's down_proj: capture the last position's input, optionally
    add a differentiable zero probe, optionally add per-row deltas to one neuron."""

    def __init__(self, model):
        self.layers = model.model.layers
        self.captured = {}
        self.leaves = {}
        self.make_leaf = False
        self.patch = None  # (layer [B], neuron [B], delta [B]) per batch row
        self.handles = [
            layer.mlp.down_proj.register_forward_pre_hook(self._hook(i))
            for i, layer in enumerate(self.layers)
        ]

    def _hook(self, layer):
        def hook(_module, args):
            (x,) = args
            last = x[:, -1, :]
            if self.make_leaf:
                # A zero probe added to the activation: d P / d probe = d P / d a, and unlike a
                # detached leaf it keeps the paths through later layers in the graph.
                probe = torch.zeros_like(last, requires_grad=True)
                self.leaves[layer] = probe
                last = last + probe
            if self.patch is not None:
                # One batch row per variant: row b adds delta[b] to neuron[b] of layer[b].
                layers, neurons, delta = self.patch
                rows = (layers == layer).nonzero().flatten()
                if len(rows) > 0:
                    last = last.clone()
                    last[rows, neurons[rows]] = last[rows, neurons[rows]] + delta[rows]
            self.captured[layer] = last.detach().clone()
            if last is x[:, -1, :]:
                return None
            return (torch.cat([x[:, :-1, :], last[:, None, :]], dim=1),)

        return hook


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    with open(args.spec) as f:
        spec = json.load(f)
    prompts = spec.get("prompts") or fail("spec has no prompts")
    neurons = spec.get("neurons") or fail("spec has no neurons")
    mode = spec.get("mode", "magnitude")
    if mode not in ("magnitude", "additive"):
        fail(f"unknown mode {mode!r}")
    shifts = shift_grid(float(spec.get("range", 2.0)), float(spec.get("step", 0.2)))
    dtype = {"float64": torch.float64, "float32": torch.float32}[spec.get("dtype", "float64")]

    # The model is tiny: extra intra-op threads only contend with other processes (measured:
    # 19 s with one thread vs 130 s with the default on a loaded 2-core machine).
    torch.set_num_threads(int(os.environ.get("NEG_REFERENCE_THREADS", "1")))
    torch.manual_seed(0)
    # A `.gguf` file goes through transformers' own GGUF loader (gguf package dequantizers).
    where, extra = args.model, {}
    if where.endswith(".gguf"):
        where, name = os.path.split(os.path.abspath(where))
        extra = {"gguf_file": name}
    tok = AutoTokenizer.from_pretrained(where, **extra)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **extra)
    model = model.to(dtype).eval()
    hooks = DownProjHooks(model)
    d = torch.tensor(shifts, dtype=dtype)

    out = {k: [] for k in ("token_ids", "probs", "activations", "cg", "neurgrad",
                           "delta_probs", "neg", "r")}
    out["shifts"] = shifts
    for i, item in enumerate(prompts):
        targets = item.get("targets") or fail(f"prompt {i} has no targets")
        ids = tok(item["prompt"], return_tensors="pt").input_ids
        out["token_ids"].append(ids[0].tolist())

        # Unpatched pass with differentiable activations at the last position.
        hooks.make_leaf, hooks.patch = True, None
        probs = torch.softmax(model(input_ids=ids).logits[0, -1], dim=-1)
        acts = {l: hooks.captured[l][0] for l in hooks.captured}
        leaves = [hooks.leaves[l] for l in range(len(hooks.layers))]
        cg = []
        for t in targets:
            grads = torch.autograd.grad(probs[t], leaves, retain_graph=True)
            cg.append([grads[l][0, n].item() for l, n in neurons])
        hooks.make_leaf = False
        a = [acts[l][n].item() for l, n in neurons]
        sign = [1.0 if v > 0 else -1.0 for v in a]
        out["probs"].append([probs[t].item() for t in targets])
        out["activations"].append(a)
        out["cg"].append(cg)
        out["neurgrad"].append([[g * s for g, s in zip(row, sign)] for row in cg])

        # Intervention sweep: one batch per prompt, row 0 unpatched, then K x S variants.
        with torch.no_grad():
            k_count, s_count = len(neurons), len(shifts)
            layers = torch.full((1 + k_count * s_count,), -1, dtype=torch.long)
            idx = torch.zeros_like(layers)
            delta = torch.zeros(1 + k_count * s_count, dtype=dtype)
            for k, (l, n) in enumerate(neurons):
                rows = slice(1 + k * s_count, 1 + (k + 1) * s_count)
                layers[rows], idx[rows] = l, n
                delta[rows] = d * sign[k] if mode == "magnitude" else d
            hooks.patch = (layers, idx, delta)
            p = torch.softmax(model(input_ids=ids.repeat(len(layers), 1)).logits[:, -1], dim=-1)
            hooks.patch = None
            dp = np.zeros((len(targets), k_count, s_count))
            for j, t in enumerate(targets):
                dp[j] = (p[1:, t] - p[0, t]).double().numpy().reshape(k_count, s_count)
        x = np.array(shifts, dtype=np.float64)
        neg = dp @ x / (x @ x)
        r = np.zeros_like(neg)
        for j in range(len(targets)):
            for k in range(len(neurons)):
                y = dp[j, k]
                if np.std(y) > 0:
                    r[j, k] = np.corrcoef(x, y)[0, 1]
        out["delta_probs"].append(dp.tolist())
        out["neg"].append(neg.tolist())
        out["r"].append(r.tolist())

    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
