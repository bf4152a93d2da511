#!/usr/bin/env python3
"""Regenerate the reference figures in bench/reference/README.md and figures.json.

Runs the numpy float64 reference (ref_llama.py) and, when built, llama.cpp through
bench/llamacpp/llama_ref (see bench/llamacpp/build.sh) on the same token ids:
  * the ChatML sanity prompt "What is the capital of France?": ids and greedy continuations;
  * paragraph.txt as the assistant's answer to "What is the capital of Australia?": per-token
    NLL of every answer token (and the closing <|im_end|>), bits/token, and the agreement of
    the two references.

    /work/refbuild/venv/bin/python bench/reference/figures.py [--llama-ref PATH] [--json OUT]
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ref_llama import DEFAULT_MODEL, Ref, build_tokenizer, chat_prompt, log_softmax_at  # noqa: E402

LN2 = math.log(2)


def llama_cpp(binary, model, mode, ids, *extra):
    cmd = [binary, model, mode, ",".join(map(str, ids)), *map(str, extra)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--llama-ref", default=os.environ.get("LLAMA_REF", "/work/refbuild/llama_ref"))
    ap.add_argument("--json", default=os.path.join(HERE, "figures.json"))
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--table", action="store_true", help="also print the per-token NLL markdown table")
    args = ap.parse_args()
    have_cpp = os.path.exists(args.llama_ref)

    ref = Ref(args.model)
    tk = build_tokenizer(ref.reader)
    enc = lambda s: tk.encode(s, add_special_tokens=False).ids  # noqa: E731
    dec = lambda v: tk.decode(v, skip_special_tokens=False)  # noqa: E731
    res = {"model": os.path.basename(args.model)}

    # --- sanity prompt
    prompt = enc(chat_prompt("What is the capital of France?"))
    lg = ref.logits(prompt)[-1]
    lp = lg - (np.log(np.exp(lg - lg.max()).sum()) + lg.max())
    top = [int(t) for t in np.argsort(-lg, kind="stable")[:5]]
    g = ref.greedy(prompt, args.n, stop=(2,))
    s = {
        "prompt_ids": prompt,
        "first_step_top5": [{"id": t, "piece": dec([t]), "logprob": round(float(lp[t]), 4)} for t in top],
        "numpy_greedy_ids": g,
        "numpy_greedy_text": dec(g),
    }
    if have_cpp:
        for th in (1, 2):
            c = llama_cpp(args.llama_ref, args.model, "greedy", prompt, args.n, th)["ids"]
            s[f"llamacpp_greedy_ids_t{th}"] = c
        s["llamacpp_greedy_text"] = dec(s["llamacpp_greedy_ids_t2"])
        # Force the numpy choice as the first token: do both continue identically from there?
        forced = llama_cpp(args.llama_ref, args.model, "greedy", prompt + g[:1], args.n - 1, 2)["ids"]
        s["llamacpp_greedy_after_forced_first_ids"] = g[:1] + forced
        s["llamacpp_greedy_after_forced_first_text"] = dec(g[:1] + forced)
    res["sanity"] = s

    # --- paragraph NLL
    with open(os.path.join(HERE, "paragraph.txt"), encoding="utf-8") as f:
        para = f.read()
    ctx = enc(chat_prompt("What is the capital of Australia?"))
    ids = ctx + enc(para) + [2]
    lg = ref.logits(ids)
    nll = -log_softmax_at(lg[:-1], np.asarray(ids[1:]))
    scored = nll[len(ctx) - 1:]  # predictions of ids[len(ctx)..]: the answer and <|im_end|>
    p = {
        "ids": ids,
        "context_len": len(ctx),
        "n_scored": len(scored),
        "numpy_nll": [round(float(v), 6) for v in scored],
        "numpy_mean_bits_per_token": round(float(scored.mean() / LN2), 4),
        "numpy_total_bits": round(float(scored.sum() / LN2), 2),
        "numpy_top1_scored": [int(v) for v in lg.argmax(axis=1)[len(ctx) - 1:-1]],
    }
    if have_cpp:
        c = llama_cpp(args.llama_ref, args.model, "nll", ids, 2)
        cn = np.asarray(c["nll"][len(ctx) - 1:])
        d = np.abs(cn - scored)
        p["llamacpp_nll"] = [round(float(v), 6) for v in cn]
        p["llamacpp_mean_bits_per_token"] = round(float(cn.mean() / LN2), 4)
        p["llamacpp_total_bits"] = round(float(cn.sum() / LN2), 2)
        p["numpy_vs_llamacpp_mean_abs_nll_diff"] = round(float(d.mean()), 4)
        p["numpy_vs_llamacpp_max_abs_nll_diff"] = round(float(d.max()), 4)
        ct = c["top1"][len(ctx) - 1:-1]
        p["numpy_vs_llamacpp_top1_agreement"] = f"{sum(a == b for a, b in zip(ct, p['numpy_top1_scored']))}/{len(ct)}"
    res["paragraph"] = p

    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    summary = {k: v for k, v in s.items() if "text" in k}
    summary.update({k: v for k, v in p.items() if not isinstance(v, list)})
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    if args.table:
        cpp = p.get("llamacpp_nll", [float("nan")] * len(p["numpy_nll"]))
        print("| # | id | piece | numpy NLL | llama.cpp NLL |\n|--:|--:|---|--:|--:|")
        for i, (a, b) in enumerate(zip(p["numpy_nll"], cpp)):
            t = ids[len(ctx) + i]
            piece = dec([t]).replace("|", "\\|").replace("\n", "\\n")
            print(f"| {i} | {t} | `{piece}` | {a:.4f} | {b:.4f} |")


if __name__ == "__main__":
    main()
