//! Byte-level BPE tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Why our own: the compression ratio depends on producing the *canonical* tokenization (the
//! one the model saw in training, i.e. what Hugging Face `tokenizers` and llama.cpp produce),
//! and both ends of a link must produce it bit-identically on any CPU. Pulling in a regex
//! engine with lookahead or a Python-compatible tokenizer stack would be heavy for the
//! decoder boards, so the pre-tokenizer regexes are implemented by hand below and checked
//! against an independent reference (`bench/tokenizer_ref/make_fixture.py`).
//!
//! Unlike the reference tokenizers this one accepts *any* bytes, including invalid UTF-8, and
//! `decode(encode(x)) == x` always holds: the input is split into maximal valid-UTF-8 runs,
//! which are pre-tokenized normally, and single invalid bytes, each of which becomes its own
//! piece (every byte has a byte-level token, so nothing is ever lost or replaced).
//!
//! Pipeline for `encode`:
//! 1. split into valid UTF-8 runs / invalid bytes;
//! 2. pre-tokenize each run into pieces (regex semantics of the model's `tokenizer.ggml.pre`);
//! 3. run lowest-rank-first BPE on each piece's bytes (via the byte-to-token table), with a
//!    small cache because natural text repeats the same pieces constantly.
//!
//! Special (control / user-defined) tokens are never produced by `encode`: text that happens
//! to spell `<|im_end|>` is coded as ordinary pieces, so a message can never forge a turn
//! boundary. Only [`Tokenizer::encode_template`] maps special spellings to their ids.
//!
//! Some byte-level vocabularies lack tokens for a few bytes (SmolLM2 has none for 21 of them:
//! 0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1-0xff). Such a byte becomes a *virtual*
//! token `vocab_size + byte` ([`Tokenizer::virtual_token`]); the model never sees it (the codec
//! codes [`Tokenizer::escape`] and the raw byte instead), and `decode` turns it back into the
//! byte. The reference tokenizers silently drop such bytes, which is not an option for us.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use tenbit_wire::TokenId;
use unicode_general_category::{get_general_category, GeneralCategory};

use tenbit_engine::gguf::{Gguf, GgufError};

/// Why a model's vocabulary cannot drive the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF's tokenizer metadata could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Not byte-level BPE (SentencePiece and others are not implemented).
    #[error("unsupported tokenizer model `{0}` (only byte-level BPE, `gpt2`, is supported)")]
    UnsupportedModel(String),
    /// Some bytes have no token, so some texts could not be coded losslessly.
    #[error("only {0} of 256 byte tokens in the vocabulary: not a byte-level BPE vocabulary")]
    NotByteLevel(usize),
    /// Merges, types or scores disagree with the vocabulary.
    #[error("tokenizer metadata is inconsistent: {0}")]
    Invalid(String),
}

/// The pre-tokenizer (regex split) family, from `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    Gpt2,
    /// SmolLM / StarCoder: every `\p{N}` char is isolated first, then the GPT-2 split runs on
    /// the pieces in between (HF `Sequence[Digits(individual_digits), ByteLevel]`).
    SmolLm,
    /// Qwen2: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Qwen2,
    /// Llama 3 (`llama-bpe`): as Qwen2 but `\p{N}{1,3}`, and a piece that is itself a vocabulary
    /// token is taken whole ("ignore_merges").
    Llama3,
}

impl PreTokenizer {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "smollm" | "starcoder" | "refact" | "codeshell" => Self::SmolLm,
            "qwen2" => Self::Qwen2,
            "gpt2" | "gpt-2" | "default" => Self::Gpt2,
            "llama-bpe" | "llama3" => Self::Llama3,
            _ => return None,
        })
    }
}

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`): 1 normal,
/// 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
const TYPE_NORMAL: i64 = 1;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

/// Pieces longer than this are tokenized without consulting the cache (they are rare and
/// would evict many useful short entries).
const CACHE_MAX_PIECE: usize = 64;
/// When the cache reaches this many entries it is simply cleared: cheap, and natural text
/// re-fills it with the frequent pieces within a few kilobytes.
const CACHE_MAX_ENTRIES: usize = 1 << 16;

const NONE: u32 = u32::MAX;

/// Multiplicative hasher for the merge table's `u64` keys (pairs of token ids). SipHash is
/// several times slower and DoS resistance is irrelevant for a fixed table built from the model.
#[derive(Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type PairMap = HashMap<u64, Merge, BuildHasherDefault<PairHasher>>;

/// Piece bytes -> their BPE token ids.
type PieceCache = HashMap<Box<[u8]>, Box<[u32]>>;

#[derive(Clone, Copy)]
struct Merge {
    rank: u32,
    merged: u32,
}

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

/// A byte-level BPE tokenizer. Cheap to share between threads (`Send + Sync`).
pub struct Tokenizer {
    pre: PreTokenizer,
    /// Raw bytes of every token, concatenated; token `i` is `bytes[offsets[i]..offsets[i+1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    special: Vec<bool>,
    /// Vocabulary spelling (as stored in the GGUF) -> id.
    by_spelling: HashMap<String, u32>,
    /// Raw bytes -> id of a non-special token (only used by the `llama-bpe` whole-piece rule).
    by_bytes: HashMap<Box<[u8]>, u32>,
    /// The token of each byte, or `vocab_size + byte` (virtual) when the vocabulary has none.
    byte_token: [u32; 256],
    escape: u32,
    merges: PairMap,
    /// Special tokens' literal text and id, longest first, for `encode_template`.
    specials_by_len: Vec<(String, u32)>,
    eos: u32,
    bos: Option<u32>,
    cache: Mutex<PieceCache>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("pre", &self.pre)
            .field("vocab", &self.vocab_size())
            .field("merges", &self.merges.len())
            .field("eos", &self.eos)
            .finish()
    }
}

/// GPT-2's reversible byte <-> printable-char table: bytes that are printable Latin-1 map to
/// themselves, the other 68 map to U+0100.. in order. Returned as byte -> char.
fn byte_to_char_table() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        t[b as usize] = char::from_u32(c).expect("table chars are below U+0200");
    }
    t
}

/// Undo the byte-level mapping of a vocabulary spelling. Chars outside the table (which a sane
/// byte-level vocabulary never has) are kept as their UTF-8 bytes, so every token still has a
/// well-defined byte string and merged tokens stay the concatenation of their parts.
fn spelling_to_bytes(s: &str, char_to_byte: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match char_to_byte.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

impl Tokenizer {
    /// Build the tokenizer from a GGUF's metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Self, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre = match g.get_str("tokenizer.ggml.pre") {
            Ok(name) => PreTokenizer::from_name(name).unwrap_or_else(|| {
                // Still lossless, just not the canonical split: compression suffers a little.
                tracing::warn!(pre = name, "unknown pre-tokenizer; using the GPT-2 split");
                PreTokenizer::Gpt2
            }),
            Err(_) => {
                tracing::warn!("GGUF has no tokenizer.ggml.pre; using the GPT-2 pre-tokenizer");
                PreTokenizer::Gpt2
            }
        };
        let tokens: Vec<&str> = g
            .get_array("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| TokenizerError::Invalid("non-string token".into()))
            })
            .collect::<Result<_, _>>()?;
        let types: Vec<i64> = match g.get_array("tokenizer.ggml.token_type") {
            Ok(a) => a
                .iter()
                .map(|v| match *v {
                    tenbit_engine::gguf::Value::I32(x) => x as i64,
                    ref other => other.as_u64().map(|x| x as i64).unwrap_or(1),
                })
                .collect(),
            Err(_) => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Invalid(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let merges: Vec<&str> = g
            .get_array("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| TokenizerError::Invalid("non-string merge".into()))
            })
            .collect::<Result<_, _>>()?;
        let eos = match g.get_u64("tokenizer.ggml.eos_token_id") {
            Ok(e) => e,
            Err(e) => tokens.iter().position(|&t| t == "<|endoftext|>").ok_or(e)? as u64,
        };
        let bos = g.get_u64("tokenizer.ggml.bos_token_id").ok();
        Self::from_parts(pre, &tokens, &types, &merges, eos, bos)
    }

    /// Build from already-extracted vocabulary data (what `from_gguf` reads). Public so tools
    /// and tests can construct small tokenizers without a model file.
    pub fn from_parts(
        pre: PreTokenizer,
        tokens: &[&str],
        types: &[i64],
        merges: &[&str],
        eos: u64,
        bos: Option<u64>,
    ) -> Result<Self, TokenizerError> {
        let n = tokens.len();
        if n == 0 || n >= NONE as usize || types.len() != n {
            return Err(TokenizerError::Invalid(format!(
                "vocabulary of {n} tokens / {} types",
                types.len()
            )));
        }
        let check_id = |id: u64, what: &str| -> Result<u32, TokenizerError> {
            if id < n as u64 {
                Ok(id as u32)
            } else {
                Err(TokenizerError::Invalid(format!(
                    "{what} id {id} outside vocabulary of {n}"
                )))
            }
        };
        let eos = check_id(eos, "eos")?;
        let bos = bos.map(|b| check_id(b, "bos")).transpose()?;

        let b2c = byte_to_char_table();
        let c2b: HashMap<char, u8> = b2c.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut special = Vec::with_capacity(n);
        let mut by_spelling = HashMap::with_capacity(n);
        let mut by_bytes = HashMap::with_capacity(n);
        let mut specials_by_len = Vec::new();
        for (i, (&tok, &ty)) in tokens.iter().zip(types).enumerate() {
            offsets.push(bytes.len() as u32);
            // Unknown and unused tokens count as special too: text must never produce them.
            let is_special = !(ty == TYPE_NORMAL || ty == TYPE_BYTE);
            special.push(is_special);
            by_spelling.entry(tok.to_string()).or_insert(i as u32);
            if is_special {
                // Specials are stored as their literal text, not byte-level mapped.
                bytes.extend_from_slice(tok.as_bytes());
                if !tok.is_empty() && (ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED) {
                    specials_by_len.push((tok.to_string(), i as u32));
                }
            } else {
                let raw = spelling_to_bytes(tok, &c2b);
                bytes.extend_from_slice(&raw);
                by_bytes.entry(raw.into_boxed_slice()).or_insert(i as u32);
            }
            if bytes.len() > u32::MAX as usize / 2 {
                return Err(TokenizerError::Invalid("vocabulary text too large".into()));
            }
        }
        offsets.push(bytes.len() as u32);
        // Longest first so that a special that is a prefix of another never shadows it.
        specials_by_len.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        let mut byte_token = [NONE; 256];
        let mut found = 0;
        for (b, c) in b2c.iter().enumerate() {
            let mut buf = [0u8; 4];
            byte_token[b] = match by_spelling.get(&*c.encode_utf8(&mut buf)) {
                Some(&id) if !special[id as usize] => {
                    found += 1;
                    id
                }
                _ => (n + b) as u32,
            };
        }
        if found < 128 {
            return Err(TokenizerError::NotByteLevel(found));
        }
        // Escape for bytes without a token: a control token that text never produces and that
        // is not the end-of-turn marker (`<|endoftext|>` in ChatML vocabularies).
        let escape = by_spelling
            .get("<|endoftext|>")
            .copied()
            .filter(|&t| t != eos && special[t as usize])
            .or_else(|| (0..n as u32).find(|&t| special[t as usize] && t != eos))
            .ok_or_else(|| {
                TokenizerError::Invalid("no control token available as byte escape".into())
            })?;

        let mut merge_map = PairMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut skipped = 0usize;
        for (rank, m) in merges.iter().enumerate() {
            // Byte-level spellings never contain a literal space, so the single space separates.
            let Some((a, b)) = m.split_once(' ') else {
                skipped += 1;
                continue;
            };
            let (Some(&ia), Some(&ib)) = (by_spelling.get(a), by_spelling.get(b)) else {
                skipped += 1;
                continue;
            };
            let merged = format!("{a}{b}");
            let Some(&im) = by_spelling.get(&merged) else {
                skipped += 1;
                continue;
            };
            // A merge must never yield a special token: `encode` promises not to emit them.
            if special[im as usize] || special[ia as usize] || special[ib as usize] {
                skipped += 1;
                continue;
            }
            // Keep the first (lowest) rank if a pair is listed twice, as HF does.
            merge_map.entry(pair_key(ia, ib)).or_insert(Merge {
                rank: rank as u32,
                merged: im,
            });
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "tokenizer merges that do not resolve to vocabulary tokens were skipped"
            );
        }

        Ok(Tokenizer {
            pre,
            bytes,
            offsets,
            special,
            by_spelling,
            by_bytes,
            byte_token,
            escape,
            merges: merge_map,
            specials_by_len,
            eos,
            bos,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Which pre-tokenizer this vocabulary uses.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Tokenize arbitrary bytes (invalid UTF-8 included). Never emits special tokens.
    pub fn encode(&self, text: &[u8]) -> Vec<TokenId> {
        let mut ids: Vec<u32> = Vec::with_capacity(text.len() / 3 + 1);
        // One lock per call: a contended cache (another thread encoding) just means this call
        // works uncached rather than waiting.
        let mut guard = self.cache.try_lock().ok();
        let mut scratch = Scratch::default();
        let mut rest = text;
        let mut base = 0usize;
        while !rest.is_empty() {
            let (valid, invalid) = match std::str::from_utf8(rest) {
                Ok(s) => (s, 0),
                Err(e) => {
                    let v = e.valid_up_to();
                    // Cannot fail: `from_utf8` just reported this prefix as valid.
                    let s = std::str::from_utf8(&rest[..v]).unwrap_or("");
                    (s, e.error_len().unwrap_or(rest.len() - v))
                }
            };
            if !valid.is_empty() {
                self.pre_tokenize(valid, &mut scratch, |a, b| {
                    let piece = &text[base + a..base + b];
                    self.bpe_cached(piece, guard.as_deref_mut(), &mut ids);
                });
            }
            let vlen = valid.len();
            // Each invalid byte is its own piece: its byte-level token.
            for &b in &rest[vlen..vlen + invalid] {
                ids.push(self.byte_token[b as usize]);
            }
            base += vlen + invalid;
            rest = &rest[vlen + invalid..];
        }
        ids.into_iter().map(TokenId).collect()
    }

    /// Tokenize the chat template's own text: exact spellings of special tokens
    /// (`<|im_start|>`, `<|im_end|>`, ...) become their ids, everything between is `encode`d.
    /// Never pass user-controlled text here.
    pub fn encode_template(&self, text: &str) -> Vec<TokenId> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hit = self
                .specials_by_len
                .iter()
                .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()));
            if let Some((s, id)) = hit {
                if start < i {
                    out.extend(self.encode(&bytes[start..i]));
                }
                out.push(TokenId(*id));
                i += s.len();
                start = i;
            } else {
                i += 1;
            }
        }
        if start < bytes.len() {
            out.extend(self.encode(&bytes[start..]));
        }
        out
    }

    /// The byte a virtual token stands for (`None` for real tokens and out-of-range ids).
    pub fn virtual_byte(&self, t: TokenId) -> Option<u8> {
        let i = t.index().checked_sub(self.vocab_size())?;
        u8::try_from(i).ok()
    }

    /// The virtual token of a byte (whether or not the vocabulary has a real one).
    pub fn virtual_token(&self, b: u8) -> TokenId {
        TokenId((self.vocab_size() + b as usize) as u32)
    }

    /// The control token the codec codes in place of a virtual byte token.
    pub fn escape(&self) -> TokenId {
        TokenId(self.escape)
    }

    /// Concatenation of the tokens' bytes. Unknown ids contribute nothing.
    pub fn decode(&self, tokens: &[TokenId]) -> Vec<u8> {
        let mut out = Vec::with_capacity(tokens.len() * 4);
        for &t in tokens {
            out.extend_from_slice(self.token_bytes(t));
        }
        out
    }

    /// Raw bytes of one token (byte-level mapping undone); specials give their literal text,
    /// a virtual byte token its byte. Any other id gives the empty slice rather than panicking,
    /// because ids arrive from the link.
    pub fn token_bytes(&self, t: TokenId) -> &[u8] {
        let i = t.index();
        if let (Some(&a), Some(&b)) = (self.offsets.get(i), self.offsets.get(i + 1)) {
            return &self.bytes[a as usize..b as usize];
        }
        match self.virtual_byte(t) {
            Some(b) => std::slice::from_ref(&ALL_BYTES[b as usize]),
            None => &[],
        }
    }

    /// Number of tokens, specials included (the length of every logits row).
    pub fn vocab_size(&self) -> usize {
        self.special.len()
    }

    /// Exact lookup by the vocabulary's own spelling (as stored in the GGUF: byte-level
    /// mapped, e.g. `"Ġthe"` for `" the"`; specials as written, e.g. `"<|im_end|>"`).
    pub fn token_id(&self, piece: &str) -> Option<TokenId> {
        self.by_spelling.get(piece).map(|&i| TokenId(i))
    }

    /// End of sequence: ends a generated reply (for ChatML models, `<|im_end|>` ends a turn).
    pub fn eos(&self) -> TokenId {
        TokenId(self.eos)
    }

    /// Beginning of sequence, if the model uses one.
    pub fn bos(&self) -> Option<TokenId> {
        self.bos.map(TokenId)
    }

    /// Control, user-defined, unknown or unused token (never produced by [`Self::encode`]),
    /// or an id that is neither a token nor a virtual byte. Virtual byte tokens are not special.
    pub fn is_special(&self, t: TokenId) -> bool {
        match self.special.get(t.index()) {
            Some(&s) => s,
            None => self.virtual_byte(t).is_none(),
        }
    }

    /// Split a valid UTF-8 run into pieces, calling `emit(start, end)` with byte offsets.
    fn pre_tokenize(&self, s: &str, sc: &mut Scratch, mut emit: impl FnMut(usize, usize)) {
        sc.chars.clear();
        sc.class.clear();
        sc.offs.clear();
        for (o, c) in s.char_indices() {
            sc.chars.push(c);
            sc.class.push(classify(c));
            sc.offs.push(o);
        }
        sc.offs.push(s.len());
        let (ch, cl, offs) = (&sc.chars[..], &sc.class[..], &sc.offs[..]);
        let n = ch.len();
        let mut out = |a: usize, b: usize| emit(offs[a], offs[b]);
        match self.pre {
            PreTokenizer::Gpt2 => split_gpt2(ch, cl, 0, n, &mut out),
            PreTokenizer::SmolLm => {
                let mut seg = 0;
                for i in 0..n {
                    if cl[i] == Class::Number {
                        split_gpt2(ch, cl, seg, i, &mut out);
                        out(i, i + 1);
                        seg = i + 1;
                    }
                }
                split_gpt2(ch, cl, seg, n, &mut out);
            }
            PreTokenizer::Qwen2 => split_llama3(ch, cl, n, 1, &mut out),
            PreTokenizer::Llama3 => split_llama3(ch, cl, n, 3, &mut out),
        }
    }

    fn bpe_cached(&self, piece: &[u8], cache: Option<&mut PieceCache>, out: &mut Vec<u32>) {
        if piece.len() == 1 {
            out.push(self.byte_token[piece[0] as usize]);
            return;
        }
        match cache {
            Some(cache) if piece.len() <= CACHE_MAX_PIECE => {
                if let Some(ids) = cache.get(piece) {
                    out.extend_from_slice(ids);
                    return;
                }
                let start = out.len();
                self.bpe(piece, out);
                if cache.len() >= CACHE_MAX_ENTRIES {
                    cache.clear();
                }
                cache.insert(piece.into(), out[start..].into());
            }
            _ => self.bpe(piece, out),
        }
    }

    /// Lowest-rank-first BPE over one piece. Ties go to the leftmost pair, matching HF
    /// `tokenizers` (a heap ordered by (rank, position)) and llama.cpp. O(n log n), so a
    /// megabyte-long whitespace run is fine.
    fn bpe(&self, piece: &[u8], out: &mut Vec<u32>) {
        if self.pre == PreTokenizer::Llama3 {
            if let Some(&id) = self.by_bytes.get(piece) {
                out.push(id);
                return;
            }
        }
        let n = piece.len();
        let mut id: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n as u32)
            .map(|i| if i as usize == n { NONE } else { i })
            .collect();
        let mut prev: Vec<u32> = (0..n as u32)
            .map(|i| if i == 0 { NONE } else { i - 1 })
            .collect();
        type Heap = std::collections::BinaryHeap<std::cmp::Reverse<(u32, u32, u32, u32)>>;
        let push = |heap: &mut Heap, a: u32, ia: u32, ib: u32| {
            if let Some(m) = self.merges.get(&pair_key(ia, ib)) {
                heap.push(std::cmp::Reverse((m.rank, a, ia, ib)));
            }
        };
        let mut heap = Heap::with_capacity(n);
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, i as u32, id[i], id[i + 1]);
        }
        while let Some(std::cmp::Reverse((_, a, ia, ib))) = heap.pop() {
            let ai = a as usize;
            let b = next[ai];
            // Stale entry: either side has changed since it was pushed (ids only ever grow
            // into longer tokens, so equal ids mean the pair is still there).
            if id[ai] != ia || b == NONE || id[b as usize] != ib {
                continue;
            }
            let m = self.merges[&pair_key(ia, ib)];
            id[ai] = m.merged;
            id[b as usize] = NONE;
            let bn = next[b as usize];
            next[ai] = bn;
            if bn != NONE {
                prev[bn as usize] = a;
                push(&mut heap, a, m.merged, id[bn as usize]);
            }
            let p = prev[ai];
            if p != NONE {
                push(&mut heap, p, id[p as usize], m.merged);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            out.push(id[i as usize]);
            i = next[i as usize];
        }
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

#[derive(Default)]
struct Scratch {
    chars: Vec<char>,
    class: Vec<Class>,
    offs: Vec<usize>,
}

/// The four character classes the pre-tokenizer regexes distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`: Lu Ll Lt Lm Lo.
    Letter,
    /// `\p{N}`: Nd Nl No.
    Number,
    /// `\s`: the Unicode White_Space property (what `char::is_whitespace` tests).
    Space,
    Other,
}

fn classify(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            '\t' | '\n' | '\x0b' | '\x0c' | '\r' | ' ' => Class::Space,
            _ => Class::Other,
        };
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    use GeneralCategory::*;
    match get_general_category(c) {
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter => {
            Class::Letter
        }
        DecimalNumber | LetterNumber | OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Length in chars of an English contraction (`'s 't 're 've 'm 'll 'd`) starting at `i`
/// (which holds `'`), or 0. `ci`: case-insensitive (Qwen2 / Llama 3).
fn contraction_len(ch: &[char], i: usize, e: usize, ci: bool) -> usize {
    let low = |k: usize| -> Option<char> {
        (k < e).then(|| {
            if ci {
                ch[k].to_ascii_lowercase()
            } else {
                ch[k]
            }
        })
    };
    match (low(i + 1), low(i + 2)) {
        (Some('s' | 't' | 'm' | 'd'), _) => 2,
        (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
        _ => 0,
    }
}

/// End of the run of chars of class `c` starting at `k`.
fn run_end(cl: &[Class], mut k: usize, e: usize, c: Class) -> usize {
    while k < e && cl[k] == c {
        k += 1;
    }
    k
}

/// Whitespace tail of both regex families: `\s+(?!\S)|\s+` at `i` (a Space char). Returns the
/// match end: the whole run if it reaches the end of text, else the run minus its last char
/// (which then prefixes the next piece or stands alone), and a lone char as-is.
fn whitespace_end(cl: &[Class], i: usize, e: usize) -> usize {
    let k = run_end(cl, i, e, Class::Space);
    if k == e || k - i == 1 {
        k
    } else {
        k - 1
    }
}

/// GPT-2 split of chars `s..e`:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn split_gpt2(ch: &[char], cl: &[Class], s: usize, e: usize, out: &mut impl FnMut(usize, usize)) {
    let mut i = s;
    while i < e {
        if ch[i] == '\'' {
            let n = contraction_len(ch, i, e, false);
            if n > 0 {
                out(i, i + n);
                i += n;
                continue;
            }
        }
        // The optional leading space of ` ?X+` only applies before a non-space char.
        let j = if ch[i] == ' ' && i + 1 < e && cl[i + 1] != Class::Space {
            i + 1
        } else {
            i
        };
        let end = match cl[j] {
            Class::Space => whitespace_end(cl, i, e),
            c => run_end(cl, j + 1, e, c),
        };
        out(i, end);
        i = end;
    }
}

/// Qwen2 / Llama 3 split of chars `0..e`, `max_digits` = 1 (Qwen2) or 3 (Llama 3):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
fn split_llama3(
    ch: &[char],
    cl: &[Class],
    e: usize,
    max_digits: usize,
    out: &mut impl FnMut(usize, usize),
) {
    let is_nl = |c: char| c == '\r' || c == '\n';
    let mut i = 0;
    while i < e {
        let c = ch[i];
        if c == '\'' {
            let n = contraction_len(ch, i, e, true);
            if n > 0 {
                out(i, i + n);
                i += n;
                continue;
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        let letters_from = if cl[i] == Class::Letter {
            Some(i)
        } else if !is_nl(c) && cl[i] != Class::Number && i + 1 < e && cl[i + 1] == Class::Letter {
            Some(i + 1)
        } else {
            None
        };
        if let Some(j) = letters_from {
            let end = run_end(cl, j, e, Class::Letter);
            out(i, end);
            i = end;
            continue;
        }
        // \p{N}{1,max}
        if cl[i] == Class::Number {
            let mut end = i + 1;
            while end < e && end - i < max_digits && cl[end] == Class::Number {
                end += 1;
            }
            out(i, end);
            i = end;
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let j = if c == ' ' && i + 1 < e { i + 1 } else { i };
        if cl[j] == Class::Other {
            let mut end = run_end(cl, j, e, Class::Other);
            while end < e && is_nl(ch[end]) {
                end += 1;
            }
            out(i, end);
            i = end;
            continue;
        }
        // Only whitespace is left here (letters, numbers and other chars were handled above).
        // \s*[\r\n]+ : up to and including the last newline of the whitespace run.
        let k = run_end(cl, i, e, Class::Space);
        if let Some(p) = (i..k).rev().find(|&p| is_nl(ch[p])) {
            out(i, p + 1);
            i = p + 1;
            continue;
        }
        let end = whitespace_end(cl, i, e);
        out(i, end);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: all 256 byte tokens plus a few merges, so the BPE core and the
    /// pre-tokenizers can be tested without the model file.
    fn toy(pre: PreTokenizer, merges: &[&str]) -> Tokenizer {
        let b2c = byte_to_char_table();
        let mut toks: Vec<String> = vec!["<|endoftext|>".into(), "<|im_end|>".into()];
        toks.extend(b2c.iter().map(|c| c.to_string()));
        for m in merges {
            let (a, b) = m.split_once(' ').unwrap();
            let s = format!("{a}{b}");
            if !toks.contains(&s) {
                toks.push(s);
            }
        }
        let mut types = vec![1i64; toks.len()];
        types[0] = 3;
        types[1] = 3;
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        Tokenizer::from_parts(pre, &refs, &types, merges, 1, None).unwrap()
    }

    fn pieces(t: &Tokenizer, s: &str) -> Vec<String> {
        let mut v = Vec::new();
        t.pre_tokenize(s, &mut Scratch::default(), |a, b| {
            v.push(s[a..b].to_string())
        });
        v
    }

    #[test]
    fn byte_table_is_a_bijection_onto_printables() {
        let t = byte_to_char_table();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
    }

    #[test]
    fn gpt2_split_matches_hand_worked_examples() {
        let t = toy(PreTokenizer::Gpt2, &[]);
        assert_eq!(pieces(&t, "Hello world"), ["Hello", " world"]);
        assert_eq!(
            pieces(&t, "I'm  here!!\n\n"),
            ["I", "'m", " ", " here", "!!", "\n\n"]
        );
        assert_eq!(pieces(&t, "a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces(&t, "x\n y"), ["x", "\n", " y"]);
        assert_eq!(pieces(&t, "x \n\ty"), ["x", " \n", "\t", "y"]);
        assert_eq!(pieces(&t, "abc 123 4"), ["abc", " 123", " 4"]);
        assert_eq!(pieces(&t, "it's 'S"), ["it", "'s", " '", "S"]);
        assert_eq!(pieces(&t, "   "), ["   "]);
    }

    #[test]
    fn smollm_isolates_every_digit() {
        let t = toy(PreTokenizer::SmolLm, &[]);
        assert_eq!(pieces(&t, "abc 123"), ["abc", " ", "1", "2", "3"]);
        assert_eq!(pieces(&t, "x  1"), ["x", "  ", "1"]);
        assert_eq!(pieces(&t, "v2.0²"), ["v", "2", ".", "0", "²"]);
    }

    #[test]
    fn qwen2_split_matches_hand_worked_examples() {
        let t = toy(PreTokenizer::Qwen2, &[]);
        assert_eq!(pieces(&t, "Hello world"), ["Hello", " world"]);
        assert_eq!(pieces(&t, "(abc) 12"), ["(abc", ")", " ", "1", "2"]);
        assert_eq!(pieces(&t, "I'M ok"), ["I", "'M", " ok"]);
        assert_eq!(pieces(&t, "x;\n\ny"), ["x", ";\n\n", "y"]);
        assert_eq!(pieces(&t, "a \n  b"), ["a", " \n", " ", " b"]);
        assert_eq!(pieces(&t, "\tfoo"), ["\tfoo"]);
        let l = toy(PreTokenizer::Llama3, &[]);
        assert_eq!(pieces(&l, "12345"), ["123", "45"]);
    }

    /// Reference BPE: the textbook O(n^2) loop (find the lowest-rank adjacent pair, leftmost on
    /// ties, merge it, repeat), written independently of the heap version.
    fn naive_bpe(t: &Tokenizer, piece: &[u8]) -> Vec<u32> {
        let mut ids: Vec<u32> = piece.iter().map(|&b| t.byte_token[b as usize]).collect();
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| {
                    t.merges
                        .get(&pair_key(ids[i], ids[i + 1]))
                        .map(|m| (m.rank, i, m.merged))
                })
                .min();
            let Some((_, i, merged)) = best else {
                return ids;
            };
            ids[i] = merged;
            ids.remove(i + 1);
        }
    }

    #[test]
    fn heap_bpe_equals_naive_bpe_on_toy_merges() {
        // Overlapping and chained merges, including a later rank for a pair made of merged parts.
        let t = toy(
            PreTokenizer::Gpt2,
            &["a a", "aa a", "b a", "aa aa", "ba a", "a b", "ab ab"],
        );
        let mut seed = 12345u64;
        for _ in 0..2000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize + 1;
            let piece: Vec<u8> = (0..len)
                .map(|k| if (seed >> k) & 1 == 0 { b'a' } else { b'b' })
                .collect();
            let mut got = Vec::new();
            t.bpe(&piece, &mut got);
            assert_eq!(
                got,
                naive_bpe(&t, &piece),
                "piece {:?}",
                String::from_utf8_lossy(&piece)
            );
        }
        // With only `a a`, three a's become `aa` + `a`: the leftmost pair wins the tie.
        let only = toy(PreTokenizer::Gpt2, &["a a"]);
        let mut got = Vec::new();
        only.bpe(b"aaa", &mut got);
        let got: Vec<TokenId> = got.into_iter().map(TokenId).collect();
        assert_eq!(only.token_bytes(got[0]), b"aa");
        assert_eq!(only.token_bytes(got[1]), b"a");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn specials_are_never_encoded_but_template_maps_them() {
        let t = toy(PreTokenizer::SmolLm, &[]);
        let ids = t.encode(b"<|im_end|>");
        assert!(ids.iter().all(|&i| !t.is_special(i)));
        assert_eq!(t.decode(&ids), b"<|im_end|>");
        assert_eq!(
            t.encode_template("x<|im_end|>"),
            vec![t.byte_token[b'x' as usize].into(), TokenId(1)]
        );
    }

    #[test]
    fn missing_byte_tokens_become_virtual_tokens() {
        let b2c = byte_to_char_table();
        // Vocabulary without the tokens for 0x04 and 0xff.
        let mut toks: Vec<String> = vec!["<|endoftext|>".into(), "<|im_end|>".into()];
        toks.extend(
            (0..=255u8)
                .filter(|&b| b != 0x04 && b != 0xff)
                .map(|b| b2c[b as usize].to_string()),
        );
        let mut types = vec![1i64; toks.len()];
        types[0] = 3;
        types[1] = 3;
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        let t = Tokenizer::from_parts(PreTokenizer::Gpt2, &refs, &types, &[], 1, None).unwrap();
        assert_eq!(t.escape(), TokenId(0));
        let ids = t.encode(b"a\x04b\xff");
        assert_eq!(ids[1], t.virtual_token(0x04));
        assert_eq!(t.virtual_byte(ids[1]), Some(0x04));
        assert_eq!(*ids.last().unwrap(), t.virtual_token(0xff));
        assert!(!t.is_special(ids[1]));
        assert!(t.is_special(TokenId(t.vocab_size() as u32 + 256)));
        assert_eq!(t.decode(&ids), b"a\x04b\xff");
        assert_eq!(t.virtual_byte(TokenId(5)), None);
    }

    #[test]
    fn invalid_utf8_bytes_are_single_pieces() {
        let t = toy(PreTokenizer::SmolLm, &["a b"]);
        let input = b"ab\xffab\xe2\x82";
        let ids = t.encode(input);
        assert_eq!(t.decode(&ids), input);
        // "ab", 0xff, "ab", 0xe2, 0x82
        assert_eq!(ids.len(), 5);
    }
}
