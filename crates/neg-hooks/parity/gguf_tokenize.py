"""Token ids from transformers' GGUF tokenizer, for neg-hooks' tokenizer parity tests.

Usage: gguf_tokenize.py GGUF_FILE TEXTS_JSON OUT_JSON [--llama-cpp-digits]

TEXTS_JSON is a list of strings. OUT_JSON gets, in the same order, the `input_ids` that
`AutoTokenizer.from_pretrained(folder, gguf_file=name)` gives for each (with special tokens, as
the models see them): transformers builds that tokenizer from the file's metadata itself.

--llama-cpp-digits: for a file whose `tokenizer.ggml.pre` is `smollm`, first split every \p{N}
character off on its own, as llama.cpp does for that pre-tokenizer (its regexes `\p{N}`, then
GPT-2's) and as SmolLM2's own tokenizer.json does (`Digits(individual_digits=True)` before
`ByteLevel`). transformers' GGUF converter (5.23) maps `smollm` to plain GPT-2 splitting, which
differs on numerals outside ASCII such as "③" (" ③" becomes one pre-token and merges "Ġâ").
"""
import json
import os
import sys

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer


def main(gguf_path, texts_path, out_path, *flags):
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if "--llama-cpp-digits" in flags:
        from gguf import GGUFReader

        field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.pre")
        pre = bytes(field.parts[field.data[0]]).decode() if field else None
        if pre == "smollm":
            tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                ]
            )
    texts = json.load(open(texts_path))
    ids = tok(texts)["input_ids"] if texts else []
    json.dump(ids, open(out_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
