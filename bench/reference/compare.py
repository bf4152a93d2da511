#!/usr/bin/env python3
"""Compare tenbit's engine with the numpy float64 reference on one text.

    /work/refbuild/venv/bin/python bench/reference/compare.py MODEL.gguf TEXT_FILE   (see README.md)

Prints: top-1 agreement over all positions, mean |NLL difference|, mean bits/token of both,
and whether the 32-token greedy continuations from the chat context agree.
"""
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ref_llama import Ref  # noqa: E402

import numpy as np  # noqa: E402

model, text = sys.argv[1], sys.argv[2]
root = os.path.join(os.path.dirname(__file__), "..", "..")
out = subprocess.run(
    ["cargo", "run", "-q", "--release", "-p", "tenbit-lm", "--example", "reference_check", "--", text, model],
    cwd=root, check=True, capture_output=True, text=True).stdout
eng = json.loads(out)
ids = eng["ids"]
ref = Ref(model)
lg = ref.logits(ids)
mx = lg.max(axis=1, keepdims=True)
lse = np.log(np.exp(lg - mx).sum(axis=1)) + mx[:, 0]
ref_nll = [float(lse[i] - lg[i, ids[i + 1]]) for i in range(len(ids) - 1)]
ref_top1 = [int(np.argmax(lg[i])) for i in range(len(ids))]
agree = sum(a == b for a, b in zip(ref_top1, eng["top1"])) / len(ids)
c = eng["context"]
d = [abs(a - b) for a, b in zip(ref_nll[c - 1:], eng["nll"][c - 1:])]
bits = lambda v: sum(v) / len(v) / math.log(2)  # noqa: E731
greedy = ref.greedy(ids[:c], len(eng["greedy_from_context"]))  # KV-cached, no stop token
n_same = next((i for i, (a, b) in enumerate(zip(greedy, eng["greedy_from_context"])) if a != b), len(greedy))
print(json.dumps({
    "positions": len(ids),
    "text_tokens": len(ids) - c,
    "top1_agreement": round(agree, 4),
    "mean_abs_nll_diff_nats": round(sum(d) / len(d), 4),
    "max_abs_nll_diff_nats": round(max(d), 4),
    "engine_bits_per_token": round(bits(eng["nll"][c - 1:]), 4),
    "reference_bits_per_token": round(bits(ref_nll[c - 1:]), 4),
    "greedy_identical_prefix": f"{n_same}/{len(greedy)}",
}, indent=1))
