#!/usr/bin/env python3
"""Independent float64 reference of the llama forward pass, in numpy, for tenbit's engine.

Why it exists: the Rust engine is engineered to be *bit-identical* across CPUs, which says
nothing about whether it is *correct*. This script shares no code with it: it reads the GGUF
with the PyPI `gguf` package, dequantises Q4_1 / Q8_0 with its own numpy code written from
ggml's block layouts (cross-checked against `gguf.quants.dequantize` by `selftest`), and runs
the llama forward pass in float64. The Rust side passes token ids, so tokenisers never confound
the comparison; `--text` is a convenience built on the HF `tokenizers` library.

Setup (a venv outside git):
    python3 -m venv /work/refbuild/venv && /work/refbuild/venv/bin/pip install numpy gguf tokenizers

Commands (MODEL defaults to ~/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf):
    ref_llama.py logits --tokens 1,2,3 --out FILE.npy     # float64 logits [T, vocab], every position
    ref_llama.py nll --tokens-file F.json                 # per-token NLL (nats) + mean bits/token
    ref_llama.py greedy --tokens 1,...,N --n 32           # greedy continuation ids (+ text)
    ref_llama.py tokenize --text "..." [--chat]           # ids from the GGUF vocab/merges
    ref_llama.py selftest                                 # own dequant == gguf's; cached == batched
Every command taking --tokens/--tokens-file also takes --text "..." (optionally --chat, which
wraps it as a user turn in the model's ChatML template with the default system message).

Model semantics, as llama.cpp runs LLM_ARCH_LLAMA:
  * RMSNorm: x / sqrt(mean(x^2) + eps) * w, eps read from the GGUF (f32 1e-5).
  * RoPE: llama_model_rope_type(LLM_ARCH_LLAMA) = LLAMA_ROPE_TYPE_NORM, i.e. rotate consecutive
    pairs (2i, 2i+1) by pos * theta^(-2i/head_dim) (convert_hf_to_gguf permutes Q/K rows so this
    matches HF's rotate_half on the original weights). theta = llama.rope.freq_base (1e5).
  * Attention: causal, scale 1/sqrt(head_dim), GQA: query head h reads kv head h // (n_head/n_kv).
  * MLP: down(silu(gate(x)) * up(x)); pre-norm residual blocks; final RMSNorm.
  * Output: `output.weight` if present, else tied to `token_embd.weight`.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader

DEFAULT_MODEL = os.path.expanduser("~/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QK = 32  # elements per block for Q4_1 and Q8_0


def dequant_q8_0(raw):
    """ggml block_q8_0: f16 d, then 32 int8 q; x = d * q. `raw` is uint8 bytes of whole blocks."""
    b = np.ascontiguousarray(raw).reshape(-1, 2 + QK)
    d = b[:, :2].copy().view("<f2").astype(np.float64)  # [nb, 1]
    q = b[:, 2:].view(np.int8).astype(np.float64)  # [nb, 32]
    return (d * q).reshape(-1)


def dequant_q4_1(raw):
    """ggml block_q4_1: f16 d, f16 m, 16 bytes of nibbles; element j (<16) is the low nibble of
    byte j and element j+16 its high nibble; x = d * q + m."""
    b = np.ascontiguousarray(raw).reshape(-1, 4 + QK // 2)
    d = b[:, 0:2].copy().view("<f2").astype(np.float64)
    m = b[:, 2:4].copy().view("<f2").astype(np.float64)
    qs = b[:, 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)  # [nb, 32]
    return (d * q + m).reshape(-1)


def dequant_own(t):
    """Dequantise a GGUFReader tensor with this file's code; returns float64, flat."""
    ty = t.tensor_type
    if ty == GGMLQuantizationType.F32:
        return np.asarray(t.data, dtype=np.float32).astype(np.float64).reshape(-1)
    if ty == GGMLQuantizationType.F16:
        return np.asarray(t.data).view("<f2").astype(np.float64).reshape(-1)
    if ty == GGMLQuantizationType.Q8_0:
        return dequant_q8_0(np.asarray(t.data, dtype=np.uint8))
    if ty == GGMLQuantizationType.Q4_1:
        return dequant_q4_1(np.asarray(t.data, dtype=np.uint8))
    if ty in PKG_TYPES:
        # Q5_0 / Q4_K / Q6_K (Qwen2.5 Q4_K_M files): the gguf package's dequantiser, which
        # shares no code with the Rust engine (engine/tests/engine_qwen.rs holds the engine's
        # dequantisers to it bit for bit on real rows).
        return dequant_pkg(t)
    raise SystemExit(f"{t.name}: tensor type {ty.name} not supported by the own dequantiser")


PKG_TYPES = (GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K)


def dequant_pkg(t):
    """Dequantise with the gguf package's implementation (for cross-checking)."""
    from gguf.quants import dequantize

    return dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    if hasattr(f, "contents"):
        return f.contents()
    # old gguf versions: scalars live in parts[data[0]], strings as byte arrays
    vals = [f.parts[i] for i in f.data]
    return vals[0][0] if len(vals) == 1 and len(vals[0]) == 1 else vals


class Ref:
    """The model in float64 with a simple KV cache (so greedy decoding is linear per step)."""

    def __init__(self, path=DEFAULT_MODEL, dequant="own"):
        self.reader = r = GGUFReader(path)
        arch = field(r, "general.architecture")
        if arch not in ("llama", "qwen2"):
            raise SystemExit(f"architecture {arch!r}: only llama and qwen2 are implemented")
        # qwen2 = llama + q/k/v biases + NEOX rope (llama_model_rope_type: LLAMA_ROPE_TYPE_NEOX).
        self.arch = arch
        self.neox = arch == "qwen2"
        self.n_head = int(field(r, f"{arch}.attention.head_count"))
        self.n_kv = int(field(r, f"{arch}.attention.head_count_kv"))
        self.n_layer = int(field(r, f"{arch}.block_count"))
        self.eps = float(field(r, f"{arch}.attention.layer_norm_rms_epsilon"))
        self.theta = float(field(r, f"{arch}.rope.freq_base", 10000.0))
        fn = dequant_own if dequant == "own" else dequant_pkg
        self.w = {}
        for t in r.tensors:
            # GGUF dims are innermost-first; numpy wants [rows, cols] = reversed.
            shape = [int(x) for x in reversed(t.shape.tolist())]
            self.w[t.name] = fn(t).reshape(shape) if len(shape) > 1 else fn(t)
        self.emb = self.w["token_embd.weight"]
        self.out = self.w.get("output.weight", self.emb)
        self.vocab, self.dim = self.emb.shape
        self.hd = self.dim // self.n_head
        self.rope_dims = int(field(r, f"{arch}.rope.dimension_count", self.hd))
        if self.rope_dims != self.hd:
            raise SystemExit("partial rotary dims not implemented")
        self.reset()

    def reset(self):
        """Empty the KV cache."""
        self.k = [np.zeros((0, self.n_kv, self.hd)) for _ in range(self.n_layer)]
        self.v = [np.zeros((0, self.n_kv, self.hd)) for _ in range(self.n_layer)]

    @property
    def n_past(self):
        return self.k[0].shape[0]

    def rms(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        """Rope on x [T, H, hd], pair i rotated by pos * theta^(-2i/hd). NORMAL mode (llama):
        pairs (2i, 2i+1); NEOX mode (qwen2): pairs (i, i + hd/2)."""
        i = np.arange(self.hd // 2, dtype=np.float64)
        ang = pos[:, None] * self.theta ** (-2.0 * i / self.hd)[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        if self.neox:
            x0, x1 = x[..., : self.hd // 2], x[..., self.hd // 2:]
            return np.concatenate([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y = np.empty_like(x)
        y[..., 0::2] = x0 * c - x1 * s
        y[..., 1::2] = x0 * s + x1 * c
        return y

    def forward(self, ids):
        """Feed `ids` after the cached context; returns float64 logits [len(ids), vocab]."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.vocab))
        if ids.min() < 0 or ids.max() >= self.vocab:
            raise SystemExit(f"token id out of range 0..{self.vocab - 1}")
        T, P = len(ids), self.n_past
        x = self.emb[ids]
        pos = np.arange(P, P + T, dtype=np.float64)
        # query t (absolute P+t) may see keys 0..P+t
        mask = np.where(np.arange(P + T)[None, :] <= (P + np.arange(T))[:, None], 0.0, -np.inf)
        g = self.n_head // self.n_kv
        scale = 1.0 / math.sqrt(self.hd)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rms(x, self.w[p + "attn_norm.weight"])
            bias = lambda n: self.w.get(p + n + ".bias", 0.0)  # noqa: E731 (qwen2 q/k/v biases)
            q = (h @ self.w[p + "attn_q.weight"].T + bias("attn_q")).reshape(T, self.n_head, self.hd)
            k = (h @ self.w[p + "attn_k.weight"].T + bias("attn_k")).reshape(T, self.n_kv, self.hd)
            v = (h @ self.w[p + "attn_v.weight"].T + bias("attn_v")).reshape(T, self.n_kv, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            self.k[l] = K = np.concatenate([self.k[l], k])
            self.v[l] = V = np.concatenate([self.v[l], v])
            att = np.empty((T, self.n_head, self.hd))
            for hh in range(self.n_head):
                s = q[:, hh] @ K[:, hh // g].T * scale + mask
                s = np.exp(s - s.max(axis=1, keepdims=True))
                att[:, hh] = (s / s.sum(axis=1, keepdims=True)) @ V[:, hh // g]
            x = x + att.reshape(T, self.dim) @ self.w[p + "attn_output.weight"].T
            h = self.rms(x, self.w[p + "ffn_norm.weight"])
            a = h @ self.w[p + "ffn_gate.weight"].T
            b = h @ self.w[p + "ffn_up.weight"].T
            x = x + ((a / (1.0 + np.exp(-a))) * b) @ self.w[p + "ffn_down.weight"].T
        return self.rms(x, self.w["output_norm.weight"]) @ self.out.T

    def logits(self, ids):
        """Logits for every position of `ids` from an empty context (one batched pass)."""
        self.reset()
        return self.forward(ids)

    def greedy(self, ids, n, stop=()):
        """Greedy continuation: argmax (lowest id on ties) for `n` steps or until a stop id."""
        lg = self.logits(ids)[-1]
        out = []
        for _ in range(n):
            t = int(np.argmax(lg))
            out.append(t)
            if t in stop:
                break
            lg = self.forward([t])[-1]
        return out


def log_softmax_at(lg, targets):
    """Natural-log probability of targets[i] under logits row i (float64, max-shifted)."""
    mx = lg.max(axis=1, keepdims=True)
    lse = np.log(np.exp(lg - mx).sum(axis=1)) + mx[:, 0]
    return lg[np.arange(len(targets)), targets] - lse


def build_tokenizer(reader):
    """HF `tokenizers` BPE from the GGUF's vocab and merges, with the smollm pre-tokeniser
    (digits split individually, then GPT-2 byte-level regex) and control tokens as specials."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    toks = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    types = field(reader, "tokenizer.ggml.token_type")
    tk = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)}, merges, fuse_unk=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(toks, types) if ty == 3])
    return tk


def chat_prompt(user, system=DEFAULT_SYSTEM):
    """ChatML as the GGUF's template renders one user turn plus the generation prompt."""
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def get_ids(args, reader):
    if args.tokens:
        return [int(v) for v in args.tokens.split(",") if v.strip()]
    if args.tokens_file:
        with open(args.tokens_file) as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = data.get("ids", data.get("tokens"))
        if not isinstance(data, list) or not all(isinstance(v, int) for v in data):
            raise SystemExit("--tokens-file: expected a JSON list of ints (or {\"ids\": [...]})")
        return data
    if args.text is not None:
        text = chat_prompt(args.text) if args.chat else args.text
        return build_tokenizer(reader).encode(text, add_special_tokens=False).ids
    raise SystemExit("give --tokens, --tokens-file or --text")


def selftest(model):
    """Two internal consistency checks that can fail: (1) this file's Q4_1/Q8_0 dequantisers
    equal the gguf package's on every tensor; (2) incremental (KV-cached, one token at a time)
    logits equal one batched pass to float64 rounding."""
    r = GGUFReader(model)
    worst = 0.0
    for t in r.tensors:
        a, b = dequant_own(t), dequant_pkg(t)
        if a.shape != b.shape:
            raise SystemExit(f"{t.name}: shape {a.shape} vs {b.shape}")
        worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"dequant own vs gguf.quants over {len(r.tensors)} tensors: max |diff| = {worst:.3g}")
    ok = worst < 1e-6  # the package computes in float32; ours in float64
    ref = Ref(model)
    ids = [1, 9690, 198, 19556, 314, 253, 5356, 30, 2, 198]
    full = ref.logits(ids)
    ref.reset()
    step = np.concatenate([ref.forward([t]) for t in ids])
    d = float(np.max(np.abs(full - step)))
    print(f"batched vs one-token-at-a-time logits: max |diff| = {d:.3g}")
    ok &= d < 1e-9
    print("selftest", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cmd", choices=["logits", "nll", "greedy", "tokenize", "selftest"])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--tokens-file", help="JSON list of token ids, or {\"ids\": [...]}")
    ap.add_argument("--text", help="text to tokenise with the GGUF vocab (HF tokenizers)")
    ap.add_argument("--chat", action="store_true", help="wrap --text as a ChatML user turn")
    ap.add_argument("--out", help="logits: .npy output path")
    ap.add_argument("--n", type=int, default=32, help="greedy: tokens to generate")
    ap.add_argument("--dequant", choices=["own", "gguf"], default="own")
    ap.add_argument("--from", dest="start", type=int, default=1,
                    help="nll: first predicted position included in the mean (default 1)")
    args = ap.parse_args()

    if args.cmd == "selftest":
        sys.exit(selftest(args.model))
    if args.cmd == "tokenize":
        ids = get_ids(args, GGUFReader(args.model))
        print(json.dumps(ids))
        return
    ref = Ref(args.model, args.dequant)
    ids = get_ids(args, ref.reader)
    if args.cmd == "logits":
        if not args.out:
            raise SystemExit("logits needs --out FILE.npy")
        np.save(args.out, ref.logits(ids))
        print(f"wrote {args.out}: {len(ids)} x {ref.vocab} float64")
    elif args.cmd == "nll":
        if len(ids) < 2:
            raise SystemExit("nll needs at least two tokens")
        lg = ref.logits(ids)
        nll = -log_softmax_at(lg[:-1], np.asarray(ids[1:]))
        part = nll[max(args.start, 1) - 1:]
        print(json.dumps({
            "ids": ids,
            "nll": [round(float(v), 6) for v in nll],  # nll[i] = -ln p(ids[i+1] | ids[..=i])
            "top1": [int(v) for v in lg.argmax(axis=1)],
            "from": max(args.start, 1),
            "n_scored": int(len(part)),
            "mean_nll_nats": float(part.mean()),
            "mean_bits_per_token": float(part.mean() / math.log(2)),
            "total_bits": float(part.sum() / math.log(2)),
        }))
    elif args.cmd == "greedy":
        eos = int(field(ref.reader, "tokenizer.ggml.eos_token_id", 2))
        out = ref.greedy(ids, args.n, stop=(eos,))
        res = {"prompt_len": len(ids), "ids": out}
        try:
            res["text"] = build_tokenizer(ref.reader).decode(out, skip_special_tokens=False)
        except ImportError:
            pass
        print(json.dumps(res))


if __name__ == "__main__":
    main()
