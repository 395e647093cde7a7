"""Convert a Hugging Face Llama checkpoint to GGUF, as llama.cpp's convert_hf_to_gguf.py does.

Usage: make_gguf.py SRC_HF_DIR OUT_GGUF [--type f32|f16|q8_0] [--no-merges] [--check]

--no-merges leaves tokenizer.ggml.merges out, as older SentencePiece files do: a reader must then
recover the merges from the scores.

SRC_HF_DIR holds config.json, model.safetensors and a sentencepiece-style tokenizer.json (BPE with
byte_fallback, `▁` for spaces), plus tokenizer_config.json if it has one. The file gets:
  - `llama.*` hyperparameters and general.file_type (0 f32, 1 f16, 7 q8_0);
  - tensors under llama.cpp's names (token_embd, blk.N.attn_q, ..., output_norm; output only when
    the embeddings are not tied), with q_proj/k_proj rows permuted the way llama.cpp does so that
    its rope pairs dimensions (i, i + 1) instead of (i, i + head_dim / 2). Norms are always F32;
    2-D weights use the chosen type, falling back to F16, as llama.cpp does, for a q8_0 tensor whose
    rows are not a multiple of 32 values;
  - the tokenizer as llama.cpp stores a sentencepiece vocabulary: tokenizer.ggml.model "llama",
    tokens in id order, token types (2 unknown, 3 control, 6 byte, 4 user-defined added token,
    1 normal), scores and bos/eos/unk ids. tokenizer.json's merges are written too
    (tokenizer.ggml.merges), so no reader has to rebuild them. Scores follow sentencepiece's BPE
    export: 0 for unknown/control/byte tokens, -id for the rest, so that a reader merging by score
    (llama.cpp's SPM tokenizer, or transformers' generate_merges without the merges key) prefers
    earlier-learned pieces. (llama.cpp's own LlamaHfVocab writes -1000 for every token, which loses
    the merge order; we do not copy that.)

--check loads the result with transformers (model and tokenizer, via gguf_file=) and compares
logits and token ids with the original checkpoint; it prints max |diff| and exits 1 on a mismatch
(logits within 1e-5 are required only for --type f32).
"""
import json
import os
import re
import sys

NO_MERGES = False

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType, GGML_QUANT_VERSION
from gguf.quants import QuantError, quantize
from safetensors.numpy import load_file

TYPES = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
}

# HF name suffix inside `model.layers.N.` -> llama.cpp name suffix inside `blk.N.`
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

CHECK_TEXTS = [
    "Once upon a time, there was a little girl named",
    "Hello world",
    " leading space",
    "  two leading spaces and trailing  ",
    "Tom had 3 apples and 12 pears in 2024.",
    "café ☃ naïve 日本",
    "line one\nline two\n\nend",
    "\ttab\tseparated",
    "She said, \"Let's go!\" and ran away...",
    "",
    "<s> literal bos text </s>",
]


def permute_rows(w, n_head):
    """llama.cpp's LlamaModel.permute: within each head, interleave the two rope halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m and m.group(2) in LAYER_NAMES:
        return f"blk.{m.group(1)}.{LAYER_NAMES[m.group(2)]}"
    raise ValueError(f"no llama.cpp name for {hf_name}")


def encode(name, w, qtype):
    """(data, raw_dtype) for GGUFWriter.add_tensor; norms and other 1-D tensors stay F32."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if w.ndim <= 1 or name.endswith("_norm.weight") or qtype == GGMLQuantizationType.F32:
        return w, None
    if qtype == GGMLQuantizationType.F16:
        return w.astype(np.float16), None
    try:
        return quantize(w, qtype), qtype
    except QuantError as e:
        print(f"{name}: {e}; falling back to F16")
        return w.astype(np.float16), None


def load_vocab(src):
    """(tokens, scores, token_types, merges, special ids) from tokenizer.json (+ configs)."""
    tok = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))
    model = tok["model"]
    if model["type"] != "BPE" or not model.get("byte_fallback", False):
        raise ValueError("expected a sentencepiece-style BPE tokenizer.json with byte_fallback")
    added = {a["content"]: a for a in tok.get("added_tokens", [])}
    ids = dict(model["vocab"])
    for content, a in added.items():
        ids.setdefault(content, a["id"])
    n = max(ids.values()) + 1
    tokens = [None] * n
    for t, i in ids.items():
        tokens[i] = t
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise ValueError(f"token ids without a token: {missing[:10]}")

    tok_cfg_path = os.path.join(src, "tokenizer_config.json")
    tok_cfg = json.load(open(tok_cfg_path)) if os.path.exists(tok_cfg_path) else {}
    cfg = json.load(open(os.path.join(src, "config.json")))

    def special_id(key, cfg_key):
        value = tok_cfg.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in ids:
            return ids[value]
        return cfg.get(cfg_key)

    unk_id = ids.get(model.get("unk_token")) if model.get("unk_token") else special_id("unk_token", "unk_token_id")
    specials = {
        "bos": special_id("bos_token", "bos_token_id"),
        "eos": special_id("eos_token", "eos_token_id"),
        "unk": unk_id,
        "pad": special_id("pad_token", "pad_token_id"),
    }
    control = {a["id"] for a in added.values() if a.get("special")}
    control |= {i for k, i in specials.items() if i is not None and k != "unk"}
    in_model = set(model["vocab"].values())

    types, scores = [], []
    for i, t in enumerate(tokens):
        if i == unk_id:
            types.append(TokenType.UNKNOWN)
        elif i in control:
            types.append(TokenType.CONTROL)
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t):
            types.append(TokenType.BYTE)
        elif i not in in_model:
            types.append(TokenType.USER_DEFINED)
        else:
            types.append(TokenType.NORMAL)
        scores.append(-float(i) if types[-1] in (TokenType.NORMAL, TokenType.USER_DEFINED) else 0.0)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    flags = (tok_cfg.get("add_bos_token", True), tok_cfg.get("add_eos_token", False))
    return tokens, scores, types, merges, specials, flags


def convert(src, out, type_name):
    qtype, ftype = TYPES[type_name]
    cfg = json.load(open(os.path.join(src, "config.json")))
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head
    rope = cfg.get("rope_parameters") or {}
    rope_theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
    if (cfg.get("rope_scaling") or {}).get("rope_type", "default") not in ("default", None):
        raise ValueError("rope scaling is not handled")
    tokens, scores, types, merges, specials, (add_bos, add_eos) = load_vocab(src)

    w = GGUFWriter(out, "llama")
    w.add_name(os.path.basename(os.path.normpath(src)))
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(rope_theta))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(len(tokens))
    w.add_file_type(int(ftype))
    w.add_quantization_version(GGML_QUANT_VERSION)

    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(np.asarray(scores, dtype=np.float32).tolist())
    w.add_token_types([int(t) for t in types])
    if merges and not NO_MERGES:
        w.add_token_merges(merges)
    if specials["bos"] is not None:
        w.add_bos_token_id(specials["bos"])
    if specials["eos"] is not None:
        w.add_eos_token_id(specials["eos"])
    if specials["unk"] is not None:
        w.add_unk_token_id(specials["unk"])
    if specials["pad"] is not None:
        w.add_pad_token_id(specials["pad"])
    w.add_add_bos_token(bool(add_bos))
    w.add_add_eos_token(bool(add_eos))

    weights = load_file(os.path.join(src, "model.safetensors"))
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in weights
    if tied:
        weights.pop("lm_head.weight", None)
    names = {tensor_name(k): k for k in weights}
    order = ["token_embd.weight"]
    for i in range(cfg["num_hidden_layers"]):
        order += [f"blk.{i}.{v}" for v in LAYER_NAMES.values()]
    order += ["output_norm.weight"] + ([] if tied else ["output.weight"])
    if set(order) != set(names):
        raise ValueError(f"tensor set differs: {sorted(set(order) ^ set(names))}")
    for name in order:
        t = weights[names[name]]
        if name.endswith("attn_q.weight"):
            t = permute_rows(t, n_head)
        elif name.endswith("attn_k.weight"):
            t = permute_rows(t, n_kv)
        data, raw_dtype = encode(name, t, qtype)
        w.add_tensor(name, data, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: {len(order)} tensors, {len(tokens)} tokens, {len(merges)} merges, tied={tied}")


def check(src, out, type_name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    d, f = os.path.split(os.path.abspath(out))
    ok = True
    tok_src = AutoTokenizer.from_pretrained(src)
    tok_file = PreTrainedTokenizerFast(tokenizer_file=os.path.join(src, "tokenizer.json"))
    tok_gguf = AutoTokenizer.from_pretrained(d, gguf_file=f)
    print(f"tokenizers: src {type(tok_src).__name__}, gguf {type(tok_gguf).__name__}")
    for text in CHECK_TEXTS:
        a = tok_src(text)["input_ids"]
        b = tok_gguf(text)["input_ids"]
        c = tok_file(text)["input_ids"]
        same = a == b
        ok &= same
        note = "" if same else f"\n    src  {a}\n    gguf {b}"
        note += "" if c == a else f"\n    tokenizer.json pipeline {c}"
        print(f"ids {'==' if same else '!='} {text!r}{note}")
        if tok_gguf.decode(b, skip_special_tokens=True) != tok_src.decode(a, skip_special_tokens=True):
            print(f"    decode differs: {tok_gguf.decode(b, skip_special_tokens=True)!r}")

    m_src = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    m_gguf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    ids = tok_src(CHECK_TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        la = m_src(ids).logits
        lb = m_gguf(ids).logits
    diff = (la - lb).abs().max().item()
    tol = 1e-5 if type_name == "f32" else None
    print(f"logits max |diff| = {diff:.3g} over {list(la.shape)} (argmax equal: "
          f"{bool((la.argmax(-1) == lb.argmax(-1)).all())})")
    if tol is not None and diff > tol:
        ok = False
    print("check", "OK" if ok else "FAILED")
    return ok


if __name__ == "__main__":
    args = sys.argv[1:]
    type_name = "f32"
    if "--type" in args:
        i = args.index("--type")
        type_name = args[i + 1]
        del args[i:i + 2]
    NO_MERGES = "--no-merges" in args
    if NO_MERGES:
        args.remove("--no-merges")
    do_check = "--check" in args
    if do_check:
        args.remove("--check")
    if len(args) != 2 or type_name not in TYPES:
        sys.exit(__doc__)
    convert(args[0], args[1], type_name)
    if do_check and not check(args[0], args[1], type_name):
        sys.exit(1)
