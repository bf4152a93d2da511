//! > NOTE TO THE "tokenizer" HELPER: the lead replaced this file to unblock integration: SmolLM2 has
//! > no token for 21 bytes, handled here with *virtual* byte tokens (vocab_size + byte) that the codec
//! > escapes. Your previous version is saved at /work/scratch/tokenizer.helper.rs. Do not overwrite this
//! > file wholesale: port your improvements (unicode categories, fixture test vs HF tokenizers, speed)
//! > into it, keeping this API (virtual_byte, virtual_token, escape). Delete this note when done.
//!
//! Byte-level BPE tokenizer rebuilt from GGUF metadata (`tokenizer.ggml.*`).
//!
//! Lossless for every byte string: text is split into valid UTF-8 runs and stray bytes; runs go
//! through the model's pre-tokenizer and BPE merges, stray bytes become their byte tokens, and
//! decoding is plain concatenation of token bytes. Special tokens never come out of `encode`
//! (text that spells `<|im_end|>` is coded as ordinary pieces), so the end-of-turn token can
//! terminate coded messages unambiguously.
//!
//! Some byte-level vocabularies lack tokens for a few bytes (SmolLM2 has none for 21 of them:
//! 0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1-0xff). Such a byte becomes a *virtual*
//! token `vocab_size + byte`; the model never sees it (the codec codes an escape token and the
//! raw byte instead), and `decode` turns it back into the byte.
//!
//! Canonical tokenization matters for compression, not for correctness: the pre-tokenizers
//! follow the model families' definitions (SmolLM: each digit alone, then the GPT-2 split).

use std::collections::HashMap;
use std::sync::Mutex;

use tenbit_common::TokenId;

use crate::gguf::{Gguf, GgufError, Value};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model `{0}` is not supported (supported: gpt2 byte-level BPE)")]
    UnsupportedModel(String),
    #[error("tokenizer metadata is inconsistent: {0}")]
    Invalid(String),
}

/// Pre-tokenizer families (`tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2 regex only.
    Gpt2,
    /// SmolLM: every digit its own piece, then GPT-2.
    SmolLm,
    /// Qwen2: letters with one leading non-letter, single digits, punctuation runs with newlines.
    Qwen2,
}

pub struct Tokenizer {
    pieces: Vec<Vec<u8>>,
    special: Vec<bool>,
    /// The token of each byte, or `vocab_size + byte` (virtual) when the vocabulary has none.
    byte_token: [u32; 256],
    escape: TokenId,
    merges: HashMap<(u32, u32), (u32, u32)>,
    specials_by_text: Vec<(String, TokenId)>,
    by_text: HashMap<String, u32>,
    eos: TokenId,
    pre: PreTokenizer,
    cache: Mutex<HashMap<Vec<u8>, Vec<TokenId>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.pieces.len())
            .field("pre", &self.pre)
            .finish()
    }
}

/// GPT-2's reversible byte <-> printable-char mapping.
fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    map
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.into()));
        }
        let tokens: Vec<&str> = g
            .get_array("tokenizer.ggml.tokens")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        if tokens.is_empty() || types.len() != tokens.len() {
            return Err(TokenizerError::Invalid(
                "token list and token types differ in length".into(),
            ));
        }
        let b2c = byte_to_char();
        let mut c2b: HashMap<char, u8> = HashMap::new();
        for (b, &c) in b2c.iter().enumerate() {
            c2b.insert(c, b as u8);
        }
        let mut pieces = Vec::with_capacity(tokens.len());
        let mut special = Vec::with_capacity(tokens.len());
        let mut by_text = HashMap::with_capacity(tokens.len());
        let mut specials_by_text = Vec::new();
        for (i, (&t, &ty)) in tokens.iter().zip(&types).enumerate() {
            // 1 normal, 6 byte: text pieces. 2 unknown, 3 control, 4 user-defined, 5 unused.
            let is_special = !(ty == 1 || ty == 6);
            let bytes = if is_special {
                t.as_bytes().to_vec()
            } else {
                t.chars()
                    .map(|c| c2b.get(&c).copied().ok_or(()))
                    .collect::<Result<Vec<u8>, ()>>()
                    .unwrap_or_else(|_| t.as_bytes().to_vec())
            };
            if is_special && (ty == 3 || ty == 4) && !t.is_empty() {
                specials_by_text.push((t.to_string(), TokenId(i as u32)));
            }
            pieces.push(bytes);
            special.push(is_special);
            by_text.insert(t.to_string(), i as u32);
        }
        // Longest first, so "<|im_start|>" wins over any shorter special that prefixes it.
        specials_by_text.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        let mut byte_token = [u32::MAX; 256];
        let mut found = 0;
        for b in 0..256usize {
            let s = b2c[b].to_string();
            byte_token[b] = match by_text.get(&s) {
                Some(&id) if !special[id as usize] => {
                    found += 1;
                    id
                }
                _ => (pieces.len() + b) as u32,
            };
        }
        if found < 128 {
            return Err(TokenizerError::Invalid(format!(
                "only {found} of 256 byte tokens: not a byte-level vocabulary"
            )));
        }
        let mut merges = HashMap::new();
        if let Some(Value::Array(ms)) = g.get("tokenizer.ggml.merges") {
            for (rank, m) in ms.iter().enumerate() {
                let Some(m) = m.as_str() else { continue };
                let Some((a, b)) = m.split_once(' ') else {
                    continue;
                };
                let (Some(&ia), Some(&ib), Some(&im)) = (
                    by_text.get(a),
                    by_text.get(b),
                    by_text.get(&format!("{a}{b}")),
                ) else {
                    continue;
                };
                merges.entry((ia, ib)).or_insert((rank as u32, im));
            }
        }
        let eos = TokenId(g.get_u64("tokenizer.ggml.eos_token_id").unwrap_or(0) as u32);
        if eos.index() >= pieces.len() {
            return Err(TokenizerError::Invalid(format!(
                "eos id {} outside the vocabulary",
                eos.0
            )));
        }
        // Escape for bytes without a token: a control token text never produces and that is
        // not the end-of-turn marker (`<|endoftext|>` in ChatML vocabularies).
        let escape = by_text
            .get("<|endoftext|>")
            .map(|&i| TokenId(i))
            .filter(|&t| t != eos)
            .or_else(|| {
                (0..pieces.len())
                    .map(|i| TokenId(i as u32))
                    .find(|&t| special[t.index()] && t != eos)
            })
            .ok_or_else(|| {
                TokenizerError::Invalid("no control token available as byte escape".into())
            })?;
        let pre = match g.get_str("tokenizer.ggml.pre").unwrap_or("gpt2") {
            "smollm" => PreTokenizer::SmolLm,
            "qwen2" => PreTokenizer::Qwen2,
            _ => PreTokenizer::Gpt2,
        };
        Ok(Tokenizer {
            pieces,
            special,
            byte_token,
            escape,
            merges,
            specials_by_text,
            by_text,
            eos,
            pre,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn eos(&self) -> TokenId {
        self.eos
    }

    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Control and other non-text tokens (virtual byte tokens are not special).
    pub fn is_special(&self, t: TokenId) -> bool {
        match self.special.get(t.index()) {
            Some(&s) => s,
            None => self.virtual_byte(t).is_none(),
        }
    }

    /// The byte a virtual token stands for (`None` for real tokens).
    pub fn virtual_byte(&self, t: TokenId) -> Option<u8> {
        let i = t.index().checked_sub(self.pieces.len())?;
        u8::try_from(i).ok()
    }

    /// The virtual token of a byte.
    pub fn virtual_token(&self, b: u8) -> TokenId {
        TokenId((self.pieces.len() + b as usize) as u32)
    }

    /// The control token the codec codes in place of a virtual byte token.
    pub fn escape(&self) -> TokenId {
        self.escape
    }

    /// Exact vocabulary lookup of a piece as written in the GGUF (e.g. `"<|im_end|>"`).
    pub fn token_id(&self, piece: &str) -> Option<TokenId> {
        self.by_text.get(piece).map(|&i| TokenId(i))
    }

    /// Raw bytes of a token; a virtual byte token gives its byte; other ids give nothing.
    pub fn token_bytes(&self, t: TokenId) -> &[u8] {
        if let Some(p) = self.pieces.get(t.index()) {
            return p;
        }
        match self.virtual_byte(t) {
            Some(b) => &ALL_BYTES[b as usize..b as usize + 1],
            None => &[],
        }
    }

    pub fn decode(&self, tokens: &[TokenId]) -> Vec<u8> {
        let mut out = Vec::new();
        for &t in tokens {
            out.extend_from_slice(self.token_bytes(t));
        }
        out
    }

    /// Tokenize any bytes. Never emits special tokens.
    pub fn encode(&self, text: &[u8]) -> Vec<TokenId> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut rest = text;
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.encode_str(s, &mut out);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: `valid_up_to` guarantees `good` is UTF-8.
                    self.encode_str(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                    let n = e.error_len().unwrap_or(bad.len()).max(1);
                    for &b in &bad[..n] {
                        out.push(TokenId(self.byte_token[b as usize]));
                    }
                    rest = &bad[n..];
                }
            }
        }
        out
    }

    /// Tokenize template text in which the exact strings of special tokens are those tokens.
    pub fn encode_template(&self, text: &str) -> Vec<TokenId> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < text.len() {
            if let Some((s, id)) = self
                .specials_by_text
                .iter()
                .find(|(s, _)| text[i..].starts_with(s.as_str()))
            {
                self.encode_str(&text[start..i], &mut out);
                out.push(*id);
                i += s.len();
                start = i;
            } else {
                i += text[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
        self.encode_str(&text[start..], &mut out);
        out
    }

    fn encode_str(&self, s: &str, out: &mut Vec<TokenId>) {
        if s.is_empty() {
            return;
        }
        let mut pieces = Vec::new();
        match self.pre {
            PreTokenizer::Gpt2 => split_gpt2(s, &mut pieces),
            PreTokenizer::SmolLm => {
                let mut start = 0;
                for (i, c) in s.char_indices() {
                    if c.is_numeric() {
                        split_gpt2(&s[start..i], &mut pieces);
                        pieces.push(&s[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                split_gpt2(&s[start..], &mut pieces);
            }
            PreTokenizer::Qwen2 => split_qwen2(s, &mut pieces),
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        for p in pieces {
            if let Some(t) = cache.get(p.as_bytes()) {
                out.extend_from_slice(t);
                continue;
            }
            let toks = self.bpe(p.as_bytes());
            out.extend_from_slice(&toks);
            cache.insert(p.as_bytes().to_vec(), toks);
        }
    }

    /// Lowest-rank-first merging of one pre-tokenized piece.
    fn bpe(&self, bytes: &[u8]) -> Vec<TokenId> {
        let mut syms: Vec<u32> = bytes.iter().map(|&b| self.byte_token[b as usize]).collect();
        while syms.len() > 1 {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len() - 1 {
                if let Some(&(rank, id)) = self.merges.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((rank, _, _)) = best else { break };
            // Merge every occurrence of the best pair, left to right.
            let mut i = 0;
            let mut next = Vec::with_capacity(syms.len());
            while i < syms.len() {
                if i + 1 < syms.len() {
                    if let Some(&(r, id)) = self.merges.get(&(syms[i], syms[i + 1])) {
                        if r == rank {
                            next.push(id);
                            i += 2;
                            continue;
                        }
                    }
                }
                next.push(syms[i]);
                i += 1;
            }
            syms = next;
        }
        syms.into_iter().map(TokenId).collect()
    }
}

/// Backing storage for the one-byte slices of virtual tokens.
static ALL_BYTES: [u8; 256] = {
    let mut a = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        a[i] = i as u8;
        i += 1;
    }
    a
};

fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

fn is_number(c: char) -> bool {
    c.is_numeric()
}

fn is_other(c: char) -> bool {
    !c.is_whitespace() && !is_letter(c) && !is_number(c)
}

fn contraction_len(rest: &str, case_insensitive: bool) -> usize {
    let b = rest.as_bytes();
    if b.first() != Some(&b'\'') {
        return 0;
    }
    let low = |i: usize| {
        b.get(i).map(|c| {
            if case_insensitive {
                c.to_ascii_lowercase()
            } else {
                *c
            }
        })
    };
    match (low(1), low(2)) {
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => 3,
        (Some(b's' | b't' | b'm' | b'd'), _) => 2,
        _ => 0,
    }
}

/// Length in bytes of the run of chars from `s` satisfying `f`.
fn run(s: &str, f: impl Fn(char) -> bool) -> usize {
    s.char_indices()
        .find(|&(_, c)| !f(c))
        .map_or(s.len(), |(i, _)| i)
}

/// Whitespace handling shared by both regexes: `\s+(?!\S)|\s+`.
fn whitespace_len(s: &str) -> usize {
    let n = run(s, char::is_whitespace);
    if n == s.len() || n == 0 {
        return n;
    }
    // Followed by non-space: leave the last whitespace char for the next piece, if any remain.
    let last = s[..n].chars().next_back().map_or(1, char::len_utf8);
    if n > last {
        n - last
    } else {
        n
    }
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
fn split_gpt2<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let c = rest.chars().next().unwrap_or(' ');
        let n = {
            let k = contraction_len(rest, false);
            if k > 0 {
                k
            } else {
                let (skip, body) = if c == ' ' { (1, &rest[1..]) } else { (0, rest) };
                let d = body.chars().next();
                match d {
                    Some(d) if is_letter(d) => skip + run(body, is_letter),
                    Some(d) if is_number(d) => skip + run(body, is_number),
                    Some(d) if is_other(d) => skip + run(body, is_other),
                    _ => whitespace_len(rest),
                }
            }
        };
        let n = n.max(c.len_utf8());
        out.push(&s[i..i + n]);
        i += n;
    }
}

/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
fn split_qwen2<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let mut it = rest.chars();
        let c = it.next().unwrap_or(' ');
        let c2 = it.next();
        let nl = |ch: char| ch == '\r' || ch == '\n';
        let n = 'm: {
            let k = contraction_len(rest, true);
            if k > 0 {
                break 'm k;
            }
            if is_letter(c) {
                break 'm run(rest, is_letter);
            }
            if !nl(c) && !is_number(c) && c2.is_some_and(is_letter) {
                let l = c.len_utf8();
                break 'm l + run(&rest[l..], is_letter);
            }
            if is_number(c) {
                break 'm c.len_utf8();
            }
            let (skip, body) = if c == ' ' { (1, &rest[1..]) } else { (0, rest) };
            if body.chars().next().is_some_and(is_other) {
                let k = skip + run(body, is_other);
                break 'm k + run(&rest[k..], nl);
            }
            // \s*[\r\n]+ : whitespace run ending in the last newline within it.
            let ws = run(rest, char::is_whitespace);
            if let Some(p) = rest[..ws].rfind(['\r', '\n']) {
                break 'm p + 1;
            }
            whitespace_len(rest)
        };
        let n = n.max(c.len_utf8());
        out.push(&s[i..i + n]);
        i += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(f: for<'a> fn(&'a str, &mut Vec<&'a str>), s: &str) -> Vec<String> {
        let mut v = Vec::new();
        f(s, &mut v);
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn gpt2_split_follows_the_regex() {
        assert_eq!(
            pieces(split_gpt2, "Hello world!! It's  fine\n\nok"),
            ["Hello", " world", "!!", " It", "'s", " ", " fine", "\n", "\n", "ok"]
        );
        assert_eq!(pieces(split_gpt2, "a  \n b"), ["a", "  \n", " b"]);
        assert_eq!(pieces(split_gpt2, "x   "), ["x", "   "]);
        assert_eq!(
            pieces(split_gpt2, "éà über 42€"),
            ["éà", " über", " 42", "€"]
        );
    }

    #[test]
    fn qwen2_split_follows_the_regex() {
        assert_eq!(
            pieces(split_qwen2, "Hello, world 123!\n\nfn x()"),
            ["Hello", ",", " world", " ", "1", "2", "3", "!\n\n", "fn", " x", "()"]
        );
    }
}
