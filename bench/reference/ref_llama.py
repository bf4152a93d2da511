#!/usr/bin/env python3
"""Independent float reference for tenbit's engine: the llama forward pass in numpy (float64).

Reads the GGUF with the `gguf` package (its own dequantisers), so nothing here shares code with
the Rust engine. Used to check that the bit-exact engine is also *correct*: same greedy
continuation, close per-token log-likelihood.

    python3 -m venv .venv && .venv/bin/pip install numpy gguf
    .venv/bin/python bench/reference/ref_llama.py MODEL.gguf nll 1,2,3,...   # -> JSON
    .venv/bin/python bench/reference/ref_llama.py MODEL.gguf greedy 1,2,3 --n 32

ggml's llama rope is the "normal" mode (pairs 2i, 2i+1) because the GGUF converter permutes
Q/K; GQA maps query head h to kv head h // (n_head / n_head_kv); the output matrix is tied to
token_embd when `output.weight` is absent.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


class Ref:
    def __init__(self, path):
        r = GGUFReader(path)
        f = {k: v for k, v in r.fields.items()}

        def val(key):
            fld = f[key]
            return fld.parts[fld.data[0]][0]

        arch = bytes(f["general.architecture"].parts[-1]).decode()
        self.n_head = int(val(f"{arch}.attention.head_count"))
        self.n_kv = int(val(f"{arch}.attention.head_count_kv"))
        self.n_layer = int(val(f"{arch}.block_count"))
        self.eps = float(val(f"{arch}.attention.layer_norm_rms_epsilon"))
        self.theta = float(val(f"{arch}.rope.freq_base"))
        self.t = {}
        for ten in r.tensors:
            a = dequantize(ten.data, ten.tensor_type).astype(np.float64)
            shape = [int(x) for x in reversed(ten.shape.tolist())]  # numpy order: rows, cols
            self.t[ten.name] = a.reshape(shape) if len(shape) > 1 else a.reshape(-1)
        self.emb = self.t["token_embd.weight"]
        self.out = self.t.get("output.weight", self.emb)
        self.dim = self.emb.shape[1]
        self.hd = self.dim // self.n_head

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # x: [T, H, hd]; normal mode: rotate (2i, 2i+1) by pos * theta^(-2i/hd)
        i = np.arange(self.hd // 2)
        freq = self.theta ** (-2.0 * i / self.hd)
        ang = pos[:, None] * freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x0 * s + x1 * c
        return y

    def logits(self, ids):
        T = len(ids)
        x = self.emb[ids]
        pos = np.arange(T, dtype=np.float64)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        g = self.n_head // self.n_kv
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rms(x, self.t[p + "attn_norm.weight"])
            q = (h @ self.t[p + "attn_q.weight"].T).reshape(T, self.n_head, self.hd)
            k = (h @ self.t[p + "attn_k.weight"].T).reshape(T, self.n_kv, self.hd)
            v = (h @ self.t[p + "attn_v.weight"].T).reshape(T, self.n_kv, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            out = np.empty((T, self.n_head, self.hd))
            for hh in range(self.n_head):
                kk, vv = k[:, hh // g], v[:, hh // g]
                s = q[:, hh] @ kk.T / np.sqrt(self.hd) + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                s /= s.sum(axis=1, keepdims=True)
                out[:, hh] = s @ vv
            x = x + out.reshape(T, self.dim) @ self.t[p + "attn_output.weight"].T
            h = self.rms(x, self.t[p + "ffn_norm.weight"])
            a = h @ self.t[p + "ffn_gate.weight"].T
            b = h @ self.t[p + "ffn_up.weight"].T
            x = x + ((a / (1 + np.exp(-a))) * b) @ self.t[p + "ffn_down.weight"].T
        return self.rms(x, self.t["output_norm.weight"]) @ self.out.T


def main():
    path, cmd, ids = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3].split(",")]
    ref = Ref(path)
    if cmd == "nll":
        lg = ref.logits(ids)
        lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
        nll = [float(lse[i] - lg[i, ids[i + 1]]) for i in range(len(ids) - 1)]
        top1 = [int(np.argmax(lg[i])) for i in range(len(ids))]
        print(json.dumps({"nll": nll, "top1": top1}))
    elif cmd == "greedy":
        n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 32
        seq = list(ids)
        for _ in range(n):
            seq.append(int(np.argmax(ref.logits(seq)[-1])))
        print(json.dumps(seq[len(ids):]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
