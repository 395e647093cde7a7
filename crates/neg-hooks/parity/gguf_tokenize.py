"""Token ids from transformers' GGUF tokenizer, for neg-hooks' tokenizer parity tests.

Usage: gguf_tokenize.py GGUF_FILE TEXTS_JSON OUT_JSON

TEXTS_JSON is a list of strings. OUT_JSON gets, in the same order, the `input_ids` that
`AutoTokenizer.from_pretrained(folder, gguf_file=name)` gives for each (with special tokens, as
the models see them): transformers builds that tokenizer from the file's metadata itself.
"""
import json
import os
import sys

from transformers import AutoTokenizer


def main(gguf_path, texts_path, out_path):
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    texts = json.load(open(texts_path))
    ids = tok(texts)["input_ids"] if texts else []
    json.dump(ids, open(out_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
