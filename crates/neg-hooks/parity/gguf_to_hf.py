"""A Hugging Face checkpoint directory from a GGUF file, through transformers' own GGUF loader.

Usage: gguf_to_hf.py GGUF_FILE OUT_DIR

Writes OUT_DIR/config.json, tokenizer.json (+ tokenizer_config.json) and model.safetensors (f32).
transformers refuses `save_pretrained` on a GGUF-loaded model, so the weights are its
`state_dict()` saved with safetensors; a tied `lm_head.weight` is left out, as in the hub's own
SmolLM2 checkpoint. The tests use this to stand in for the hub repository
HuggingFaceTB/SmolLM2-135M-Instruct in an offline HF_HOME cache.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(gguf_path, out_dir):
    folder, name = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    os.makedirs(out_dir, exist_ok=True)
    model.config.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    main(*sys.argv[1:3])
