"""Small random checkpoints for neg-hooks' parity tests, saved with transformers.

Usage: make_tiny.py KIND OUT_DIR [STORIES_DIR]

KIND:
  llama3       Llama 3 layout: GQA, explicit head_dim (!= hidden/heads), `llama3` rope scaling,
               untied lm_head (needs STORIES_DIR for a 512-token tokenizer)
  qwen2        Qwen2: q/k/v biases, rope_theta 1e6, rms_norm_eps 1e-6, tied head (STORIES_DIR)
  bert         BERT masked LM with a small WordPiece vocabulary
  bert-legacy  the same weights saved the old way: LayerNorm gamma/beta names and no decoder
               weight (tied to the word embeddings)
Weights are drawn with a larger std than transformers' default so that the output
distribution is far from uniform and the gradients checked are not vanishingly small.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

WORDS = (
    "the a cat dog sat on mat paris is capital of france berlin germany rome italy city "
    "river big small red blue ran jumped over lazy fox brown quick and in to was he she it "
    "##s ##ed ##ing . , !"
).split()


def scale_init(model, std):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, std)
            elif "norm" in name.lower() and name.endswith("weight"):
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.05)


def llama_like(kind, out, stories):
    if kind == "llama3":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
        )
        model = LlamaForCausalLM(cfg)
    else:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        cfg = Qwen2Config(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            use_sliding_window=False,
            bos_token_id=1,
            eos_token_id=2,
        )
        model = Qwen2ForCausalLM(cfg)
    scale_init(model, 0.15)
    model.save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(stories, f), os.path.join(out, f))


def bert(out, legacy):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    os.makedirs(out, exist_ok=True)
    tok = BertWordPieceTokenizer(vocab, lowercase=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "vocab.txt"), "w") as f:
        f.write("\n".join(specials + WORDS) + "\n")
    json.dump(
        {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, "mask_token": "[MASK]",
         "model_max_length": 64},
        open(os.path.join(out, "tokenizer_config.json"), "w"),
    )
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        hidden_act="gelu",
    )
    model = BertForMaskedLM(cfg)
    scale_init(model, 0.15)
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    if legacy:
        path = os.path.join(out, "model.safetensors")
        w = load_file(path)
        renamed = {}
        for k, v in w.items():
            if k == "cls.predictions.decoder.weight":
                continue
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            renamed[k] = v.contiguous()
        save_file(renamed, path, metadata={"format": "pt"})


def main(kind, out, stories=None):
    os.makedirs(out, exist_ok=True)
    if kind in ("llama3", "qwen2"):
        llama_like(kind, out, stories)
    elif kind in ("bert", "bert-legacy"):
        bert(out, kind == "bert-legacy")
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main(*sys.argv[1:])
