#!/usr/bin/env python3
"""Writes a randomly initialised Llama checkpoint for the benchmarks (never committed).

Default shape: a ~135M-parameter Llama (SmolLM-135M's: hidden 576, intermediate 1536,
30 layers, 9 heads, 3 KV heads, vocab 49152, tied embeddings), float32, weights drawn by
transformers' own initialiser under a fixed seed, so every run writes the same file.

The tokenizer is stories260k's (vocab 512, copied from ../shared/models/stories260k): the
benchmarks need a real tokenizer to turn prompts into ids, and every id it produces is valid
in the larger vocabulary; the compute per token (including the 49152-wide LM head) is that of
the shape above.

Usage (from the workspace root):
    .venv/bin/python scripts/bench/make_random_llama.py \
        [--out target/bench-models/llama-135m-random] [--seed 0] [--force]
    .venv/bin/python scripts/bench/make_random_llama.py --shape llama2-7b \
        --out target/bench-models/llama2-7b-random --dtype bfloat16
    # the 7B width with 4 of its 32 layers (1.1B parameters): per-layer costs of the 7B shape
    # on a machine that cannot hold all of it
    .venv/bin/python scripts/bench/make_random_llama.py --shape llama2-7b --layers 4 \
        --out target/bench-models/llama2-7b-4layers-random --dtype bfloat16
"""
import argparse
import json
import os
import shutil
import sys

SHAPES = {
    "llama-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                       max_position_embeddings=2048, tie_word_embeddings=True),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, tie_word_embeddings=False),
}

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("NEG_SHARED") or os.path.join(ROOT, "..", "shared")
TOKENIZER_DIR = os.path.join(SHARED, "models", "stories260k")


def fail(msg):
    print(f"make_random_llama.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-135m")
    ap.add_argument("--out", default=None,
                    help="output directory (default target/bench-models/<shape>-random)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--layers", type=int, default=None,
                    help="number of layers instead of the shape's (same width)")
    ap.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    ap.add_argument("--device", default="cpu",
                    help="where the weights are drawn: cuda makes a 7B shape in seconds instead "
                         "of minutes (other random numbers than on the CPU; same shapes)")
    args = ap.parse_args()

    out = args.out or os.path.join(ROOT, "target", "bench-models", f"{args.shape}-random")
    if os.path.exists(os.path.join(out, "model.safetensors")) and not args.force:
        print(f"{out} already holds a checkpoint (use --force to rewrite it)")
        return
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not os.path.isfile(os.path.join(TOKENIZER_DIR, name)):
            fail(f"{os.path.join(TOKENIZER_DIR, name)} is missing: the benchmarks take the "
                 "tokenizer from ../shared/models/stories260k")

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(SHAPES[args.shape])
    if args.layers is not None:
        if args.layers < 1:
            fail(f"--layers {args.layers}: must be at least 1")
        shape["num_hidden_layers"] = args.layers

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        **shape,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        hidden_act="silu",
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.02,
    )
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    if args.device == "cpu":
        model = LlamaForCausalLM(config).to(dtype).eval()
    else:
        # Drawn on the device directly in the target dtype: a Llama-2-7B shape in f32 on the
        # CPU takes minutes and 27 GB.
        torch.set_default_dtype(dtype)
        with torch.device(args.device):
            model = LlamaForCausalLM(config).eval()
        torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="100GB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(out, name))
    with open(os.path.join(out, "bench-model.json"), "w") as f:
        json.dump({"shape": args.shape, "layers": shape["num_hidden_layers"], "seed": args.seed, "dtype": args.dtype,
                   "device": args.device,
                   "parameters": params, "tokenizer": "stories260k"}, f, indent=1)
    print(f"wrote {out}: {params / 1e6:.1f}M parameters ({args.dtype}, seed {args.seed})")


if __name__ == "__main__":
    main()
