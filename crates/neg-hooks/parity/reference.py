"""Reference tensors from Hugging Face transformers for neg-hooks' parity tests.

Usage: reference.py MODEL PROMPTS_JSON OUT_SAFETENSORS

MODEL is a Hugging Face directory, or a `.gguf` file, which transformers' own GGUF loader reads
(`from_pretrained(folder, gguf_file=name)`: it dequantizes with the `gguf` package, undoes
llama.cpp's q/k permutation and builds the tokenizer from the file's metadata).

PROMPTS_JSON is a list of {"text": str, "targets": [int, ...]} with the same number of targets
each. For every prompt (run alone, unpadded, f32, CPU, eager attention) this writes:
  ids_{i}   token ids (int64) from AutoTokenizer
  logits    [P, V] logits at the measured position (last token; the [MASK] for BERT)
  probs     [P, T] softmax probability of each target there
  acts      [P, L, N] FF activations: the input of the down projection (Llama/Qwen
            `mlp.down_proj`, BERT `output.dense`), captured with register_forward_pre_hook
  grads     [P, T, L, N] d probs / d acts, by torch.autograd.grad through a zero tensor added
            to each layer's activation at the position (so later layers see the change too)
  lpi       [P, T, L, N] (causal LMs) log-probability increase, Yu & Ananiadou 2024, as
            defined in shared/papers/NOTES.md: r = input of post_attention_layernorm,
            v_j = a_j * W_down[:, j], final_var = mean square of the last layer's output
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerFast


def main(model_dir, prompts_path, out_path):
    torch.manual_seed(0)
    extra = {}
    if model_dir.endswith(".gguf"):
        model_dir, name = os.path.split(os.path.abspath(model_dir))
        extra = {"gguf_file": name}
    cfg = AutoConfig.from_pretrained(model_dir, **extra)
    masked = cfg.model_type == "bert"
    cls = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager", **extra)
    model.eval()
    if cfg.model_type == "qwen2":
        # The tiny Qwen2 test checkpoint borrows a Llama tokenizer.json, which transformers'
        # Qwen2 tokenizer class would re-configure; run the file's own pipeline instead.
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    else:
        tok = AutoTokenizer.from_pretrained(model_dir, **extra)
    if masked:
        layers = model.bert.encoder.layer
        down = [blk.output.dense for blk in layers]
    else:
        layers = model.model.layers
        down = [blk.mlp.down_proj for blk in layers]
    prompts = json.load(open(prompts_path))
    out = {}
    logits_all, probs_all, acts_all, grads_all, lpi_all = [], [], [], [], []
    for i, p in enumerate(prompts):
        ids = tok(p["text"], return_tensors="pt")["input_ids"]
        out[f"ids_{i}"] = ids[0].to(torch.int64).contiguous()
        if masked:
            pos = int((ids[0] == tok.mask_token_id).nonzero()[0, 0])
        else:
            pos = ids.shape[1] - 1
        zeros = [torch.zeros(cfg.intermediate_size, requires_grad=True) for _ in down]
        captured = [None] * len(down)

        def make_hook(l):
            def hook(_module, args):
                x = args[0]
                captured[l] = x[0, pos].detach().clone()
                x = x.clone()
                x[:, pos] = x[:, pos] + zeros[l]
                return (x,)

            return hook

        handles = [m.register_forward_pre_hook(make_hook(l)) for l, m in enumerate(down)]
        pre_ff = [None] * len(down)
        final = [None]
        if not masked:
            for l, blk in enumerate(layers):
                def pre(_m, args, l=l):
                    pre_ff[l] = args[0][0, pos].detach().clone()
                handles.append(blk.post_attention_layernorm.register_forward_pre_hook(pre))

            def fin(_m, args):
                final[0] = args[0][0, pos].detach().clone()
            handles.append(model.model.norm.register_forward_pre_hook(fin))
        logits = model(input_ids=ids).logits[0, pos]
        for h in handles:
            h.remove()
        prob = torch.softmax(logits.float(), -1)
        targets = p["targets"]
        tgrads = []
        for t in targets:
            g = torch.autograd.grad(prob[t], zeros, retain_graph=True)
            tgrads.append(torch.stack(g))
        if not masked:
            tg = torch.tensor(targets, dtype=torch.long)
            with torch.no_grad():
                var = final[0].pow(2).mean()
                rs = torch.rsqrt(var + model.model.norm.variance_epsilon)
                head = model.lm_head.weight

                def logp(x):
                    y = model.model.norm.weight * (x * rs)
                    return torch.log_softmax(y @ head.T, -1)[..., tg]

                per_layer = []
                for l in range(len(down)):
                    r = pre_ff[l]
                    x = r[None, :] + captured[l][:, None] * down[l].weight.T
                    per_layer.append((logp(x) - logp(r)[None, :]).T)  # [T, N]
                lpi_all.append(torch.stack(per_layer, 1))  # [T, L, N]
        logits_all.append(logits.detach())
        probs_all.append(prob[targets].detach())
        acts_all.append(torch.stack(captured))
        grads_all.append(torch.stack(tgrads) if tgrads else torch.zeros(0, len(down), cfg.intermediate_size))
    out["logits"] = torch.stack(logits_all).contiguous()
    out["probs"] = torch.stack(probs_all).contiguous()
    out["acts"] = torch.stack(acts_all).contiguous()
    out["grads"] = torch.stack(grads_all).contiguous()
    if lpi_all:
        out["lpi"] = torch.stack(lpi_all).contiguous()
    save_file(out, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:4])
