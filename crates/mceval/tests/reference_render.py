"""Independent reference renderer for MCEval8K prompts, written from the `schema`/`assembly`
description in templates.json (not from the Rust code). Usage:
    reference_render.py TEMPLATES DATA_ROOT N
Prints a JSON object {task: {"zero": [...], "few": [...] or null}} for the first N test records;
tasks with a `k_shot_rule` (PAWS) also get "k_shot": {k: [prompts]} for the k in K_SHOTS, built
from that rule's text: demos = train rows perm[perm] with perm =
numpy.random.default_rng(42).permutation(len(train)), first k, in that order, each with its own
answer, in the few_shot assembly."""
import json
import sys

import numpy as np

templates_path, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = json.load(open(templates_path, encoding="utf-8"))
TRANSFORMS = {
    "join_space": lambda v: " ".join(v),
    "mask_Y": lambda v: v.replace("[Y]", "[MASK]"),
    "remove_spaces": lambda v: "".join(v.split(" ")),
}


def body(t, rec):
    lang = rec.get("lang") if t["prompt_language"] == "record" else "en"
    values = dict(rec)
    for tr in t["field_transforms"]:
        if tr["langs"] is None or rec.get("lang") in tr["langs"]:
            values[tr["field"]] = TRANSFORMS[tr["transform"]](values[tr["field"]])
    o = t["options"]
    if o is not None:
        if o["source"] == "fixed":
            vals = o["values"]
            if isinstance(vals, dict):
                vals = vals[rec.get("lang", "en")]
        elif o["source"] == "field":
            vals = rec[o["field"]]
        else:
            vals = [values[f] for f in o["fields"]]
        values["options"] = o["joiner"].join(
            o["item_format"].format(letter=o["letters"][i], value=v) for i, v in enumerate(vals)
        )
    q = t["question"][lang].format(**values)
    if t["collapse_double_newlines"]:
        q = q.replace("\n\n", "\n")
    return q


def answer(t, rec):
    v = rec[t["label_field"]]
    if t["label_map"] is None:
        return t["answer_tokens"][int(v)]
    return t["label_map"][str(v)]


K_SHOTS = [1, 3, 4, 7, 16]


def k_shot_demos(t, train, k):
    perm = np.random.default_rng(42).permutation(len(train))
    rows = perm[perm][:k]
    return "\n\n".join(body(t, train[int(i)]) + answer(t, train[int(i)]) for i in rows)


out = {}
for name, t in spec["tasks"].items():
    test = json.load(open(f"{root}/{t['data_dir']}/test.json", encoding="utf-8"))[:n]
    train = None
    if t["demo_train_indices"] is not None:
        train = json.load(open(f"{root}/{t['data_dir']}/train.json", encoding="utf-8"))
    zero, few = [], []
    for rec in test:
        lang = rec.get("lang") if t["prompt_language"] == "record" else "en"
        instr = t["instruction"][lang].strip()
        q = body(t, rec).strip()
        zero.append({"prompt": f"{instr}\n\n{q}", "answer": answer(t, rec)})
        if train is not None:
            idx = t["demo_train_indices"]
            if isinstance(idx, dict):
                idx = idx[lang]
            demos = "\n\n".join(body(t, train[i]) + answer(t, train[i]) for i in idx)
            few.append(f"{instr}\n\n{demos.strip()}\n\n{q}")
    out[name] = {"zero": zero, "few": few if train is not None else None}
    if t.get("k_shot_rule") is not None:
        instr = t["instruction"]["en"].strip()
        out[name]["k_shot"] = {
            str(k): [
                f"{instr}\n\n{k_shot_demos(t, train, k).strip()}\n\n{body(t, rec).strip()}"
                for rec in test
            ]
            for k in K_SHOTS
        }
json.dump(out, sys.stdout, ensure_ascii=False)
