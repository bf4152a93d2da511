#!/usr/bin/env python3
"""Reference tokenizations for tenbit's Rust tokenizer, from an independent implementation.

Builds a Hugging Face `tokenizers` BPE tokenizer from the vocabulary and merges stored in a
GGUF file, with the pre-tokenizer pipeline the model was trained with, tokenizes a fixed set of
varied strings plus seeded random ones, and writes a JSON fixture that
lm/tests/tokenizer_reference.rs compares against `Tokenizer::encode`, id for id.

Pipelines (what the models' own tokenizer.json files declare):
  smollm: Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]
  qwen2:  Sequence[Split(<qwen2 regex>, Isolated), ByteLevel(add_prefix_space=False, use_regex=False)]
          (Qwen's NFC normalizer is deliberately left out: tenbit must be lossless on any bytes.)
No added/special tokens are registered for the plain cases, because tenbit's `encode` never
emits them. The "chat" cases execute the GGUF's own Jinja chat template (jinja2, as
transformers' apply_chat_template does, add_generation_prompt=True) and tokenize the result
with the control tokens registered as specials: the reference for `ChatTemplate::render`.

Regenerate (from the repository root; needs the model in the tenbit model dir):
  python3 -m pip install tokenizers==0.23.3 gguf==0.19.0 jinja2==3.1.6
  python3 bench/tokenizer_ref/make_fixture.py \
      ~/.cache/tenbit/models/SmolLM2-135M-Instruct.Q4_1.gguf lm/tests/fixtures/smollm_tokens.json
"""
import hashlib
import json
import random
import sys

import jinja2

from gguf import GGUFReader, GGUFValueType
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def field(reader, key):
    f = reader.fields[key]
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0]


def build(path):
    r = GGUFReader(path)
    global TEMPLATE, CONTROL
    TEMPLATE = field(r, "tokenizer.chat_template")
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    pre = field(r, "tokenizer.ggml.pre")
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    types = field(r, "tokenizer.ggml.token_type")
    CONTROL = [t for t, ty in zip(tokens, types) if ty in (3, 4)]
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    elif pre == "qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        sys.exit(f"no reference pipeline for pre-tokenizer {pre!r}")
    return tok, pre


FIXED = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll agree it's what they'd've wanted. DON'T SHOUT'S",
    "  leading spaces and trailing   ",
    "tabs\tand\t\ttabs\n\nnew\r\nlines\r\n\r\n",
    "x  1  22   333 4444 55555 3.14159 -2e10 1,000,000",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() {\n\tlet v: Vec<u32> = (0..10).map(|x| x * x).collect();\n\tprintln!(\"{v:?}\");\n}\n",
    "<html><body class=\"main\">&nbsp;&lt;tag&gt;</body></html>",
    "E = mc² ∑_{i=1}^{n} x_i ≤ ∫₀^∞ e^{-x²} dx ≈ 0.886, Ⅻ ⅔ ①",
    "∀ε>0 ∃δ>0: |x−a|<δ ⇒ |f(x)−f(a)|<ε",
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 😀😀😀",
    "日本語のテキストと漢字。中文文本，还有标点！한국어 텍스트입니다.",
    "Привет, мир! Ελληνικά κείμενα. Ünïcödé àccénts façade naïve café",
    "مرحبا بالعالم. שלום עולם. नमस्ते दुनिया। ภาษาไทย",
    "zero\u200bwidth\u200djoiner\ufeffbom and nbsp\u00a0here and\u3000ideographic space",
    "control \x01\x02\x1b[31m red \x1b[0m \x1c\x1d\x1e\x1f\x7f \x0b\x0c end",
    "line\u2028separator\u2029para \u0085nel",
    "combining: e\u0301 a\u0308 n\u0303 \u0301alone",
    "fullwidth ０１２３ ＡＢＣ arabic-indic ٠١٢٣ devanagari ०१२",
    "NUL\x00inside\x00\x00",
    "   \n   \n\n\t \t   ",
    "'s 't 're 've 'm 'll 'd ''s '' ' s",
    "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) ___ +++",
    "https://example.com/path?query=1&b=two#frag user@example.org",
    "a" * 300,
    " " * 257 + "x" + "\n" * 40 + "y",
    "1234567890" * 5,
]

ALPHABET = (
    list("aAzZ09 ' \t\n\r.,;:!?-_()[]{}<>\"/\\|@#$%^&*+=~`")
    + ["é", "ß", "Ω", "ж", "日", "本", "한", "ع", "ा", "्", "²", "½", "Ⅻ", "٣", "０"]
    + ["\u00a0", "\u3000", "\u2028", "\u200b", "\u0301", "\x00", "\x1c", "\x85", "👍", "🏽", "\u200d", "🇫"]
    + ["the", " the", "ing", " and", "'s", "'ll", "  ", "\r\n", "123"]
)


def random_cases(n, seed=20241125):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(ALPHABET) for _ in range(k)))
    return out


CONVERSATIONS = [
    [("user", "Hi!")],
    [("user", "What is 2+2?"), ("assistant", "4."), ("user", "And 3 * 7?")],
    [("system", "You are terse."), ("user", "Explain BPE in one line.")],
    [("user", "  leading spaces\n\nand a blank line")],
    [("user", "\ncontent starting with a newline")],
    [("user", "ends with newline\n")],
    [("user", "multi\nline\n\n\ncontent 123")],
    [("system", ""), ("user", "empty system")],
    [("user", "emoji 👍 and 日本語"), ("assistant", "ok 😀"), ("user", "thanks")],
]


def render_chat(tok, messages):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(TEMPLATE).render(
        messages=[{"role": r, "content": c} for r, c in messages], add_generation_prompt=True
    )
    tok.add_special_tokens(CONTROL)
    return text, tok.encode(text, add_special_tokens=False).ids


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, out_path = sys.argv[1], sys.argv[2]
    tok, pre = build(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    cases = []
    for text in FIXED + random_cases(400):
        enc = tok.encode(text, add_special_tokens=False)
        cases.append({"text": text, "ids": enc.ids})
    chats = []
    for conv in CONVERSATIONS:
        text, ids = render_chat(tok, conv)
        chats.append({"messages": [list(m) for m in conv], "text": text, "ids": ids})
    header = {
        "generator": "bench/tokenizer_ref/make_fixture.py (HF tokenizers %s)" % __import__("tokenizers").__version__,
        "model_sha256": h.hexdigest(),
        "pre": pre,
    }
    # One case per line keeps diffs of a regenerated fixture readable.
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(header, ensure_ascii=True)[:-1] + ',\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True) for c in cases))
        f.write('\n],\n"chats": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True) for c in chats))
        f.write("\n]}\n")
    print(f"wrote {len(cases)} cases to {out_path}")


if __name__ == "__main__":
    main()
