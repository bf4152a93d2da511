//! Text in, coded bytes out, and back: the small model drives the range coder.
//!
//! Both ends run the same sequence of engine calls on the same tokens, so they see the same
//! logits (the engine's bit-exactness law), turn them into the same integer CDF
//! ([`tenbit_wire::freq`]) and the range coder stays in lock-step.
//!
//! Wire semantics of a payload (part of the frame format, do not change without bumping
//! `FRAME_VERSION`):
//! * With `HAS_PROMPT`: context = chat template's user prefix; the prompt's tokens are coded,
//!   then `<|im_end|>`; then the assistant prefix is fed (not coded) and the response's tokens
//!   are coded, then `<|im_end|>`.
//! * Without: context = the bare assistant prefix (system turn, then `<|im_start|>assistant\n`);
//!   the response's tokens are coded, then `<|im_end|>`.
//! * The end-of-turn token is the terminator, so no length field is needed. Text never
//!   tokenizes to a special token, so the terminator is unambiguous.
//! * Context window: [`WINDOW`] positions. When the cache is full, both sides reset it and
//!   re-feed the last [`WINDOW`]/2 tokens of the history, at exactly the same points, so messages
//!   of any length are coded in bounded memory.

use tenbit_wire::coder::{decode_symbol, encode_symbol, CoderError, RangeDecoder, RangeEncoder};
use tenbit_wire::compact::{self, CompactHeader};
use tenbit_wire::frame::{
    encode_frame, peek_header, verify_frame, Flags, Frame, FrameError, FrameHeader, Mode,
    ModelIdentity, FRAME_VERSION,
};
use tenbit_wire::freq::{Calibration, Cdf, CdfTable, FreqError};
use tenbit_wire::TokenId;

use crate::chat::{ChatError, ChatTemplate};
use crate::pick;
use crate::qa;
use crate::tokenizer::{Tokenizer, TokenizerError};
use tenbit_engine::{logits_hash, EngineError, Model, Session, SessionOptions};

mod batch;

/// KV-cache window used for coding. Fixed by the wire format: both ends must slide at the
/// same positions, so this is not a user setting.
pub const WINDOW: usize = 2048;
/// Default largest message `encode` accepts; the CLIs let users raise it.
pub const DEFAULT_MAX_INPUT: usize = 256 * 1024;
/// A decoder reading this many implicit zero bytes past the payload's end is decoding noise.
const MAX_OVERRUN: usize = 16;

/// Why an encode or decode failed. The `Display` text is written for the person at the CLI;
/// the variant tells a caller whether the input, the frame, or the model is at fault.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The engine failed (model file, adapter, or session limits); nothing about the message.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The model's GGUF tokenizer metadata is unusable: use another model file.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The model's chat template is missing or not one this crate can lay out.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The frame is malformed, of an unknown version, or made for another model.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The engine's logits gave no valid frequency table (a model or engine bug, not the input).
    #[error("frequency table: {0}")]
    Freq(#[from] FreqError),
    /// The message is over the size limit; the user can raise it with `--max-size`.
    #[error("input is {len} bytes; tenbit codes messages of at most {max} bytes (raise the limit with --max-size)")]
    TooLarge {
        /// Size of the input, in bytes.
        len: u64,
        /// The limit in force, in bytes.
        max: u64,
    },
    /// The payload does not decode; the text says which check failed.
    #[error("payload is corrupt: {0}")]
    Corrupt(&'static str),
    /// A question-asking run failed (strong model outage, or a frame short of answer bits).
    #[error(transparent)]
    Qa(#[from] qa::QaError),
    /// A pick run or pick frame failed (bad K or index, or the judge is down).
    #[error(transparent)]
    Pick(#[from] pick::PickError),
    /// QA and pick modes put the prompt in a chat turn as text, so it must be valid UTF-8.
    #[error("QA mode needs a UTF-8 prompt")]
    NotUtf8Prompt,
    /// The frame was coded against a prompt it does not carry: pass the same prompt again.
    #[error("this frame was coded against a prompt the receiver must supply (--prompt or --prompt-file)")]
    PromptRequired,
    /// The checksum failed; with a known prompt, the likeliest cause is a different prompt.
    #[error("frame checksum mismatch: the frame is corrupt, or it was coded against a different prompt than the one supplied (or, for a compact QA/pick frame, which names no model, with another model or adapter)")]
    CorruptOrWrongPrompt,
    /// The frame's mode is not one this entry point decodes; use the decoder for that mode.
    #[error("this is a {0:?}-mode frame; it needs the matching decoder command")]
    WrongMode(Mode),
    /// Decoding never reached the end marker: the payload is corrupt (or coded for another model).
    #[error("decoded text exceeds {max} tokens without an end marker: the payload is corrupt")]
    Runaway {
        /// The token limit that was hit.
        max: usize,
    },
    /// Prompt and response together do not fit the model's context for this mode.
    #[error("the text needs {needed} positions of context but the window holds {capacity}")]
    ContextOverflow {
        /// Positions the prompt and text need, in tokens.
        needed: usize,
        /// Positions the window holds, in tokens.
        capacity: usize,
    },
}

impl From<CoderError> for CodecError {
    fn from(e: CoderError) -> Self {
        match e {
            CoderError::Corrupt => CodecError::Corrupt("range decoder left the valid interval"),
            _ => CodecError::Corrupt("range coder error"),
        }
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The frame's mode: what `text` is (the exact text, a rewrite, or QA's final answer).
    pub mode: Mode,
    /// The prompt, when the frame carried it.
    pub prompt: Option<Vec<u8>>,
    /// The message text.
    pub text: Vec<u8>,
    /// QA frames: the replayed conversation (questions and the bits that answered them).
    pub transcript: Option<qa::Transcript>,
}

/// How a message relates to the prompt it answers.
#[derive(Debug, Clone, Copy)]
pub enum PromptUse<'a> {
    /// No prompt: the response is coded after a bare assistant turn.
    None,
    /// Both ends know the prompt (the receiver asked it): it conditions the model but is not
    /// sent. The frame's checksum is keyed with the prompt, so a decoder given another prompt
    /// refuses the frame instead of printing garbage.
    Known(&'a [u8]),
    /// The prompt travels in the frame too, coded with the model before the response.
    Sent(&'a [u8]),
}

/// Where the decoder gets the prompt from (mirror of [`PromptUse`]).
#[derive(Debug, Clone, Copy)]
pub enum DecodePrompt<'a> {
    /// The frame was coded with no prompt.
    None,
    /// The receiver supplies the prompt; it must be byte-identical to the encoder's.
    Known(&'a [u8]),
    /// The prompt is decoded from the frame itself.
    InFrame,
}

/// Progress of a long encode or decode: tokens done, and the total when known.
pub type Progress<'a> = &'a mut dyn FnMut(usize, Option<usize>);

/// Everything needed to code messages with one model and its adapter, if one is set.
pub struct LmCodec<'m> {
    model: &'m Model,
    tok: Tokenizer,
    chat: ChatTemplate,
    opts: SessionOptions,
    identity: ModelIdentity,
    eot: TokenId,
    window: usize,
}

/// Identity of (model, adapter): what frames name and what the decoder checks.
pub fn identity_of(model_hash: &[u8; 32], adapter_hash: Option<&[u8; 32]>) -> ModelIdentity {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tenbit/identity/v1");
    h.update(model_hash);
    h.update(adapter_hash.unwrap_or(&[0u8; 32]));
    ModelIdentity(h.finalize().into())
}

/// The model's side of a coding run: a session plus the history needed to slide the window.
struct Predictor<'m> {
    sess: Session<'m>,
    history: Vec<TokenId>,
    table: CdfTable,
    cal: Calibration,
}

impl<'m> Predictor<'m> {
    fn new(
        model: &'m Model,
        opts: &SessionOptions,
        window: usize,
        cal: Calibration,
    ) -> Result<Self, CodecError> {
        let mut opts = opts.clone();
        opts.max_ctx = window;
        let sess = Session::new(model, opts)?;
        Ok(Predictor {
            sess,
            history: Vec::new(),
            table: CdfTable::uniform(model.config().n_vocab)?,
            cal,
        })
    }

    /// The CDF predicting the token after everything fed so far.
    fn cdf(&self) -> Cdf<'_> {
        self.table.cdf()
    }

    /// Feed `toks`; `f(i, cdf)` receives the CDF predicting the token after `toks[i]`.
    /// Afterwards [`Predictor::cdf`] predicts the token after the last one.
    fn feed_with(
        &mut self,
        toks: &[TokenId],
        f: &mut dyn FnMut(usize, Cdf<'_>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let cap = self.sess.capacity();
        let mut i = 0;
        let mut err: Option<CodecError> = None;
        while i < toks.len() {
            if self.sess.len() >= cap {
                let keep = self.history[self.history.len() - cap / 2..].to_vec();
                self.sess.reset();
                self.sess.feed_all(&keep, &mut |_, _| {})?;
            }
            let n = (toks.len() - i).min(cap - self.sess.len());
            let table = &mut self.table;
            let cal = self.cal;
            self.sess.feed_all(&toks[i..i + n], &mut |j, logits| {
                if err.is_some() {
                    return;
                }
                if let Err(e) = table.set_from_logits(cal, logits) {
                    err = Some(e.into());
                    return;
                }
                if let Err(e) = f(i + j, table.cdf()) {
                    err = Some(e);
                }
            })?;
            if let Some(e) = err.take() {
                return Err(e);
            }
            self.history.extend_from_slice(&toks[i..i + n]);
            i += n;
        }
        Ok(())
    }

    fn feed(&mut self, toks: &[TokenId]) -> Result<(), CodecError> {
        self.feed_with(toks, &mut |_, _| Ok(()))
    }
}

impl<'m> LmCodec<'m> {
    /// A codec for `model` (with its adapter, if loaded); fails if the model's tokenizer or
    /// chat template cannot be rebuilt from its GGUF metadata.
    pub fn new(model: &'m Model, opts: SessionOptions) -> Result<Self, CodecError> {
        let tok = Tokenizer::from_gguf(model.gguf())?;
        let chat = ChatTemplate::from_gguf(model.gguf())?;
        let eot = chat.end_of_turn(&tok);
        let adapter = model.adapter().map(|a| a.content_hash());
        let identity = identity_of(&model.content_hash(), adapter.as_ref());
        Ok(LmCodec {
            model,
            tok,
            chat,
            opts,
            identity,
            eot,
            window: WINDOW,
        })
    }

    /// Use a smaller context window (tests exercise the sliding logic with it). Frames coded
    /// with a non-default window only decode with the same window.
    #[doc(hidden)]
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.clamp(8, WINDOW);
        self
    }

    /// The model (and adapter) identity written into every frame; a decoder with another
    /// identity refuses the frame.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The tokenizer rebuilt from the model's GGUF metadata.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tok
    }

    /// The model's chat template, used to lay out prompts as the model was trained to read them.
    pub fn chat(&self) -> &ChatTemplate {
        &self.chat
    }

    /// The model the codec predicts with.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Code `prompt` (if any) and `text` into a range-coded payload (current calibration).
    pub fn encode_payload(
        &self,
        prompt: PromptUse<'_>,
        text: &[u8],
        progress: Progress<'_>,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_payload_with(Calibration::CURRENT, prompt, text, progress)
    }

    /// [`encode_payload`](Self::encode_payload) with an explicit calibration (old frame
    /// versions, and the tests that prove they still decode).
    pub fn encode_payload_with(
        &self,
        cal: Calibration,
        prompt: PromptUse<'_>,
        text: &[u8],
        progress: Progress<'_>,
    ) -> Result<Vec<u8>, CodecError> {
        let mut p = Predictor::new(self.model, &self.opts, self.window, cal)?;
        let mut enc = RangeEncoder::new(Vec::new());
        let text_toks = self.tok.encode(text);
        let mut done = 0usize;
        match prompt {
            PromptUse::None => p.feed(&self.chat.bare_assistant_prefix(&self.tok, None))?,
            PromptUse::Known(pr) => p.feed(&self.known_prompt_context(pr))?,
            PromptUse::Sent(pr) => {
                let pt = self.tok.encode(pr);
                let total = text_toks.len() + pt.len() + 2;
                p.feed(&self.chat.user_prefix(&self.tok, None))?;
                self.code_segment(&mut p, &mut enc, &pt, &mut done, total, progress)?;
                p.feed(&self.after_user_turn())?;
            }
        }
        let total = done + text_toks.len() + 1;
        self.code_segment(&mut p, &mut enc, &text_toks, &mut done, total, progress)?;
        Ok(enc.finish()?)
    }

    /// Tokens fed after a coded prompt: its end-of-turn, then the assistant prefix.
    fn after_user_turn(&self) -> Vec<TokenId> {
        let mut tail = vec![self.eot];
        tail.extend(self.chat.assistant_prefix(&self.tok));
        tail
    }

    /// The whole context when the prompt is known to both ends.
    fn known_prompt_context(&self, prompt: &[u8]) -> Vec<TokenId> {
        let mut ctx = self.chat.user_prefix(&self.tok, None);
        ctx.extend(self.tok.encode(prompt));
        ctx.extend(self.after_user_turn());
        ctx
    }

    /// The identity a frame coded against a known prompt is checked with: the model identity's
    /// tag (so a model mismatch is still named as such) and a checksum key that covers the
    /// prompt (so a wrong prompt fails the checksum).
    pub fn identity_for_prompt(&self, prompt: &[u8]) -> ModelIdentity {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tenbit/known-prompt/v1");
        h.update(self.identity.0);
        h.update(prompt);
        let mut id: [u8; 32] = h.finalize().into();
        id[0] = self.identity.0[0];
        ModelIdentity(id)
    }

    /// Code `toks` then the end-of-turn marker; `p.cdf` must predict `toks[0]` on entry.
    /// A virtual byte token (a byte the vocabulary lacks) is coded as the escape token followed
    /// by its 8 bits at probability 1/2 each, and the model is fed the escape token.
    fn code_segment(
        &self,
        p: &mut Predictor<'_>,
        enc: &mut RangeEncoder<Vec<u8>>,
        toks: &[TokenId],
        done: &mut usize,
        total: usize,
        progress: Progress<'_>,
    ) -> Result<(), CodecError> {
        let eot = self.eot;
        let esc = self.tok.escape();
        let model_toks = self.model_tokens(toks);
        let code =
            |enc: &mut RangeEncoder<Vec<u8>>, cdf: Cdf<'_>, i: usize| -> Result<(), CodecError> {
                let t = toks.get(i).copied().unwrap_or(eot);
                match self.tok.virtual_byte(t) {
                    Some(b) => {
                        encode_symbol(enc, cdf, esc.index())?;
                        for k in 0..8 {
                            enc.encode_bit((b >> k) & 1 == 1)?;
                        }
                    }
                    None => encode_symbol(enc, cdf, t.index())?,
                }
                Ok(())
            };
        code(enc, p.cdf(), 0)?;
        *done += 1;
        // Feeding toks[..] yields, at position i, the CDF for toks[i+1] (or the terminator).
        p.feed_with(&model_toks, &mut |i, cdf| {
            code(enc, cdf, i + 1)?;
            *done += 1;
            if done.is_multiple_of(64) {
                progress(*done, Some(total));
            }
            Ok(())
        })?;
        progress(*done, Some(total));
        Ok(())
    }

    /// Inverse of [`encode_payload`](Self::encode_payload).
    pub fn decode_payload(
        &self,
        payload: &[u8],
        prompt: DecodePrompt<'_>,
        max_tokens: usize,
        progress: Progress<'_>,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), CodecError> {
        self.decode_payload_with(Calibration::CURRENT, payload, prompt, max_tokens, progress)
    }

    /// Inverse of [`encode_payload_with`](Self::encode_payload_with).
    pub fn decode_payload_with(
        &self,
        cal: Calibration,
        payload: &[u8],
        prompt: DecodePrompt<'_>,
        max_tokens: usize,
        progress: Progress<'_>,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), CodecError> {
        let mut p = Predictor::new(self.model, &self.opts, self.window, cal)?;
        let mut dec = RangeDecoder::new(payload);
        let mut done = 0usize;
        let prompt = match prompt {
            DecodePrompt::None => {
                p.feed(&self.chat.bare_assistant_prefix(&self.tok, None))?;
                None
            }
            DecodePrompt::Known(pr) => {
                p.feed(&self.known_prompt_context(pr))?;
                None
            }
            DecodePrompt::InFrame => {
                p.feed(&self.chat.user_prefix(&self.tok, None))?;
                let pt = self.decode_segment(&mut p, &mut dec, max_tokens, &mut done, progress)?;
                p.feed(&self.after_user_turn())?;
                Some(self.tok.decode(&pt))
            }
        };
        let text = self.decode_segment(&mut p, &mut dec, max_tokens, &mut done, progress)?;
        Ok((prompt, self.tok.decode(&text)))
    }

    fn decode_segment(
        &self,
        p: &mut Predictor<'_>,
        dec: &mut RangeDecoder<'_>,
        max_tokens: usize,
        done: &mut usize,
        progress: Progress<'_>,
    ) -> Result<Vec<TokenId>, CodecError> {
        let mut out = Vec::new();
        loop {
            let sym = decode_symbol(dec, p.cdf())?;
            if dec.overrun() > MAX_OVERRUN {
                return Err(CodecError::Corrupt(
                    "payload ended before the end-of-turn marker",
                ));
            }
            let t = TokenId(sym as u32);
            if t == self.eot {
                return Ok(out);
            }
            if out.len() >= max_tokens {
                return Err(CodecError::Runaway { max: max_tokens });
            }
            if t == self.tok.escape() {
                let mut b = 0u8;
                for k in 0..8 {
                    b |= (dec.decode_bit()? as u8) << k;
                }
                out.push(self.tok.virtual_token(b));
            } else if self.tok.is_special(t) {
                return Err(CodecError::Corrupt(
                    "decoded a control token that text never contains",
                ));
            } else {
                out.push(t);
            }
            *done += 1;
            if done.is_multiple_of(16) {
                progress(*done, None);
            }
            p.feed(&[t])?;
        }
    }

    /// Encode a whole message into a frame.
    pub fn encode_message(
        &self,
        prompt: PromptUse<'_>,
        text: &[u8],
        mode: Mode,
        progress: Progress<'_>,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode_message_as(FRAME_VERSION, prompt, text, mode, progress)
    }

    /// Encode a frame of an older format `version` (for compatibility tests; new frames use
    /// [`encode_message`](Self::encode_message)).
    #[doc(hidden)]
    pub fn encode_message_as(
        &self,
        version: u8,
        prompt: PromptUse<'_>,
        text: &[u8],
        mode: Mode,
        progress: Progress<'_>,
    ) -> Result<Vec<u8>, CodecError> {
        let cal = Calibration::for_frame_version(version)
            .ok_or(CodecError::Corrupt("no such frame version"))?;
        let payload = self.encode_payload_with(cal, prompt, text, progress)?;
        self.frame_of(version, mode, prompt, &payload)
    }

    /// The frame around a coded payload: the prompt's use decides the flags and the key of
    /// the frame's check (a known prompt keys it, so a frame replayed with another prompt is
    /// refused). The one-message and the batched encoders share it, so their frames stay identical.
    pub(crate) fn frame_of(
        &self,
        version: u8,
        mode: Mode,
        prompt: PromptUse<'_>,
        payload: &[u8],
    ) -> Result<Vec<u8>, CodecError> {
        let (flags, key) = match prompt {
            PromptUse::None => (Flags::default(), self.identity.clone()),
            PromptUse::Known(p) => (
                Flags::default().with(Flags::PROMPT_KNOWN),
                self.identity_for_prompt(p),
            ),
            PromptUse::Sent(_) => (
                Flags::default().with(Flags::HAS_PROMPT),
                self.identity.clone(),
            ),
        };
        frame(version, mode, flags, &key, payload)
    }

    /// Decode any frame: the one entry point both binaries use. Lossless and rewrite frames go
    /// through the range decoder, QA frames replay the small model's question-asking with the
    /// frame's answer bits. Refuses frames of other models, newer versions, corrupt ones, and
    /// frames coded against a prompt the caller did not supply (or supplied differently).
    /// `max_tokens` bounds the work a corrupt frame can cause (text tokens are >= 1 byte, so the
    /// largest accepted message size in bytes is a safe bound).
    pub fn decode(
        &self,
        frame: &[u8],
        known_prompt: Option<&[u8]>,
        max_tokens: usize,
        progress: Progress<'_>,
    ) -> Result<Message, CodecError> {
        let mode = frame_mode(frame)?;
        match mode {
            Mode::Lossless | Mode::Rewrite => {
                let header = peek_header(frame)?;
                self.decode_text(frame, header, known_prompt, max_tokens, progress)
            }
            Mode::Qa => {
                let prompt = known_prompt.ok_or(CodecError::PromptRequired)?;
                let t = self.replay_qa(frame, prompt)?;
                Ok(Message {
                    mode: Mode::Qa,
                    prompt: None,
                    text: t.final_answer.clone().into_bytes(),
                    transcript: Some(t),
                })
            }
            Mode::Pick => {
                let prompt = known_prompt.ok_or(CodecError::PromptRequired)?;
                let (_, _, text) = self.replay_pick(frame, prompt)?;
                Ok(Message {
                    mode: Mode::Pick,
                    prompt: None,
                    text: text.into_bytes(),
                    transcript: None,
                })
            }
        }
    }

    /// Check a frame's model tag and keyed checksum against `key`; a frame coded against a
    /// known prompt that fails the checksum is most likely answered with the wrong prompt.
    fn verify<'f>(
        frame: &'f [u8],
        header: FrameHeader,
        key: &ModelIdentity,
    ) -> Result<Frame<'f>, CodecError> {
        match verify_frame(frame, header, key) {
            Err(FrameError::Corrupt) if header.flags.contains(Flags::PROMPT_KNOWN) => {
                Err(CodecError::CorruptOrWrongPrompt)
            }
            other => Ok(other?),
        }
    }

    fn decode_text(
        &self,
        frame: &[u8],
        header: FrameHeader,
        known_prompt: Option<&[u8]>,
        max_tokens: usize,
        progress: Progress<'_>,
    ) -> Result<Message, CodecError> {
        let flags = header.flags;
        let (key, how) = if flags.contains(Flags::PROMPT_KNOWN) {
            let p = known_prompt.ok_or(CodecError::PromptRequired)?;
            (self.identity_for_prompt(p), DecodePrompt::Known(p))
        } else if flags.contains(Flags::HAS_PROMPT) {
            (self.identity.clone(), DecodePrompt::InFrame)
        } else {
            (self.identity.clone(), DecodePrompt::None)
        };
        let f = Self::verify(frame, header, &key)?;
        // peek_header refused versions this decoder does not know, so this always succeeds.
        let cal = Calibration::for_frame_version(f.header.version)
            .ok_or(CodecError::Corrupt("frame version has no calibration"))?;
        let (prompt, text) = self.decode_payload_with(cal, f.payload, how, max_tokens, progress)?;
        Ok(Message {
            mode: f.header.mode,
            prompt,
            text,
            transcript: None,
        })
    }

    /// Tokens as the model is fed them: a virtual byte token (a byte the vocabulary lacks) is
    /// fed as the escape token that codes it.
    fn model_tokens(&self, toks: &[TokenId]) -> Vec<TokenId> {
        let esc = self.tok.escape();
        toks.iter()
            .map(|&t| {
                if self.tok.virtual_byte(t).is_some() {
                    esc
                } else {
                    t
                }
            })
            .collect()
    }

    /// Logits hash at every fed position of (context, prompt, text): the cross-machine probe.
    pub fn logit_trace(
        &self,
        prompt: Option<&[u8]>,
        text: &[u8],
        batched: bool,
    ) -> Result<Vec<(TokenId, [u8; 32])>, CodecError> {
        let mut toks = match prompt {
            Some(p) => self.known_prompt_context(p),
            None => self.chat.bare_assistant_prefix(&self.tok, None),
        };
        toks.extend(self.model_tokens(&self.tok.encode(text)));
        toks.push(self.eot);
        let mut opts = self.opts.clone();
        opts.max_ctx = WINDOW;
        let mut sess = Session::new(self.model, opts)?;
        if toks.len() > sess.capacity() {
            return Err(CodecError::ContextOverflow {
                needed: toks.len(),
                capacity: sess.capacity(),
            });
        }
        let mut out = Vec::with_capacity(toks.len());
        if batched {
            sess.feed_all(&toks, &mut |i, l| out.push((toks[i], logits_hash(l))))?;
        } else {
            for &t in &toks {
                let l = sess.feed(&[t])?;
                out.push((t, logits_hash(l)));
            }
        }
        Ok(out)
    }

    /// QA mode, encoder side: run the small model's side of question-asking with `k` questions,
    /// each answered by `oracle` (the strong model), and frame only the answer bits. The prompt
    /// is never sent: the receiver asked it, and the frame's checksum is keyed with it.
    pub fn encode_qa(
        &self,
        prompt: &[u8],
        k: usize,
        oracle: &mut dyn qa::Oracle,
    ) -> Result<(Vec<u8>, qa::Transcript), CodecError> {
        self.encode_qa_with(prompt, k, qa::Protocol::CURRENT, oracle)
    }

    /// [`encode_qa`](Self::encode_qa) with an explicit conversation revision (tests of older
    /// frames; the edge replays whichever revision the frame names).
    pub fn encode_qa_with(
        &self,
        prompt: &[u8],
        k: usize,
        protocol: qa::Protocol,
        oracle: &mut dyn qa::Oracle,
    ) -> Result<(Vec<u8>, qa::Transcript), CodecError> {
        let text = std::str::from_utf8(prompt).map_err(|_| CodecError::NotUtf8Prompt)?;
        let t = qa::run(
            self.model, &self.opts, &self.tok, &self.chat, text, k, protocol, oracle,
        )?;
        let bits: Vec<bool> = t.questions.iter().map(|(_, b)| *b).collect();
        let key = self.identity_for_prompt(prompt);
        let compact = CompactHeader {
            mode: Mode::Qa,
            revision: protocol.number(),
            k: u8::try_from(k).unwrap_or(u8::MAX),
        };
        if compact.fits() {
            let data = bits
                .iter()
                .enumerate()
                .fold(0u32, |d, (i, &b)| d | (u32::from(b) << i));
            return Ok((compact_frame(&compact, data, &key)?, t));
        }
        let payload = qa::pack_bits(protocol, &bits);
        let flags = Flags::default().with(Flags::PROMPT_KNOWN);
        Ok((frame(FRAME_VERSION, Mode::Qa, flags, &key, &payload)?, t))
    }

    /// QA mode, edge side: replay the small model's conversation with the frame's bits and
    /// return the same transcript (and so the same final answer) the encoder saw.
    pub fn decode_qa(&self, frame: &[u8], prompt: &[u8]) -> Result<qa::Transcript, CodecError> {
        match frame_mode(frame)? {
            Mode::Qa => self.replay_qa(frame, prompt),
            other => Err(CodecError::WrongMode(other)),
        }
    }

    /// The answer bits of a QA frame (compact or full) checked against `prompt`.
    fn qa_bits(
        &self,
        frame: &[u8],
        prompt: &[u8],
    ) -> Result<(qa::Protocol, Vec<bool>), CodecError> {
        let key = self.identity_for_prompt(prompt);
        if compact::is_compact(frame) {
            let f = verify_compact(frame, &key)?;
            let protocol = qa::Protocol::from_number(f.header.revision).ok_or(
                CodecError::Corrupt("QA frame names an unknown protocol revision"),
            )?;
            let bits = (0..f.header.k).map(|i| f.data >> i & 1 == 1).collect();
            return Ok((protocol, bits));
        }
        let header = peek_header(frame)?;
        let f = Self::verify(frame, header, &key)?;
        qa::unpack_bits(f.payload).ok_or(CodecError::Corrupt(
            "QA payload length disagrees with its bit count",
        ))
    }

    fn replay_qa(&self, frame: &[u8], prompt: &[u8]) -> Result<qa::Transcript, CodecError> {
        let (protocol, bits) = self.qa_bits(frame, prompt)?;
        let text = std::str::from_utf8(prompt).map_err(|_| CodecError::NotUtf8Prompt)?;
        Ok(qa::run(
            self.model,
            &self.opts,
            &self.tok,
            &self.chat,
            text,
            bits.len(),
            protocol,
            &mut qa::Bits(&bits),
        )?)
    }
}

/// What [`LmCodec::encode_pick`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickOutcome {
    /// Every candidate drawn, by index.
    pub candidates: Vec<String>,
    /// The judge's choice and its pick frame; `None` when no candidate is good (the caller
    /// then sends a lossless or rewrite frame of the strong answer instead).
    pub chosen: Option<(u32, Vec<u8>)>,
}

impl<'m> LmCodec<'m> {
    /// Pick mode, encoder side: draw the 2^`k` candidates in one batch, let `judge` choose, and
    /// frame the index (keyed with the prompt like QA frames, which the receiver asked).
    pub fn encode_pick(
        &self,
        prompt: &[u8],
        k: u32,
        judge: &mut dyn pick::Judge,
    ) -> Result<PickOutcome, CodecError> {
        pick::check_bits(k)?;
        let text = std::str::from_utf8(prompt).map_err(|_| CodecError::NotUtf8Prompt)?;
        let indices: Vec<u32> = (0..1u32 << k).collect();
        let candidates = self.pick_candidates(text, &indices)?;
        let choice = judge
            .choose(text, &candidates)
            .map_err(pick::PickError::Judge)?;
        let chosen = match choice {
            None => None,
            Some(i) if i < candidates.len() => {
                let key = self.identity_for_prompt(prompt);
                let compact = CompactHeader {
                    mode: Mode::Pick,
                    revision: pick::PICK_REVISION,
                    k: k as u8,
                };
                let f = if compact.fits() {
                    compact_frame(&compact, i as u32, &key)?
                } else {
                    let payload = pick::pack(k, i as u32);
                    let flags = Flags::default().with(Flags::PROMPT_KNOWN);
                    frame(FRAME_VERSION, Mode::Pick, flags, &key, &payload)?
                };
                Some((i as u32, f))
            }
            Some(i) => return Err(pick::PickError::IndexOutOfRange { index: i as u64, k }.into()),
        };
        Ok(PickOutcome { candidates, chosen })
    }

    /// The pick candidates `indices` for `prompt` (the encoder draws them all, the edge one).
    pub fn pick_candidates(
        &self,
        prompt: &str,
        indices: &[u32],
    ) -> Result<Vec<String>, CodecError> {
        Ok(pick::draw(
            self.model, &self.opts, &self.tok, &self.chat, prompt, indices,
        )?)
    }

    /// Pick mode, edge side: check the frame against the prompt and draw only its candidate.
    /// Returns (K, index, candidate text).
    pub fn decode_pick(
        &self,
        frame: &[u8],
        prompt: &[u8],
    ) -> Result<(u32, u32, String), CodecError> {
        match frame_mode(frame)? {
            Mode::Pick => self.replay_pick(frame, prompt),
            other => Err(CodecError::WrongMode(other)),
        }
    }

    /// (K, index) of a pick frame (compact or full) checked against `prompt`.
    fn pick_index(&self, frame: &[u8], prompt: &[u8]) -> Result<(u32, u32), CodecError> {
        let key = self.identity_for_prompt(prompt);
        if compact::is_compact(frame) {
            let f = verify_compact(frame, &key)?;
            if f.header.revision != pick::PICK_REVISION {
                return Err(pick::PickError::UnknownRevision(f.header.revision).into());
            }
            let k = u32::from(f.header.k);
            pick::check_bits(k)?;
            return Ok((k, f.data));
        }
        let header = peek_header(frame)?;
        let f = Self::verify(frame, header, &key)?;
        Ok(pick::unpack(f.payload)?)
    }

    fn replay_pick(&self, frame: &[u8], prompt: &[u8]) -> Result<(u32, u32, String), CodecError> {
        let (k, index) = self.pick_index(frame, prompt)?;
        let text = std::str::from_utf8(prompt).map_err(|_| CodecError::NotUtf8Prompt)?;
        let mut c = self.pick_candidates(text, &[index])?;
        Ok((k, index, c.pop().unwrap_or_default()))
    }
}

/// Assemble a frame: header (its tag from `key`), payload, checksum keyed with `key`.
fn frame(
    version: u8,
    mode: Mode,
    flags: Flags,
    key: &ModelIdentity,
    payload: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let header = FrameHeader {
        version,
        mode,
        flags,
        model_tag: key.tag(),
    };
    let mut out = Vec::with_capacity(payload.len() + tenbit_wire::frame::FRAME_OVERHEAD);
    encode_frame(&header, key, payload, &mut out)?;
    Ok(out)
}

/// The mode of a frame (full or compact) without decoding it (for `tenbit inspect` and logs).
pub fn frame_mode(frame: &[u8]) -> Result<Mode, CodecError> {
    if compact::is_compact(frame) {
        return Ok(compact::peek_compact(frame)?.mode);
    }
    Ok(peek_header(frame)?.mode)
}

/// The compact frame of a QA or pick run (see [`tenbit_wire::compact`]).
fn compact_frame(
    header: &CompactHeader,
    data: u32,
    key: &ModelIdentity,
) -> Result<Vec<u8>, CodecError> {
    let mut out = [0u8; compact::MAX_COMPACT_LEN];
    let n = compact::encode_compact(header, data, key, &mut out)?;
    Ok(out[..n].to_vec())
}

/// Check a compact frame against the prompt-keyed identity. Compact frames are always coded
/// against a known prompt and carry no model tag, so a failed check means a damaged frame, a
/// different prompt, or another model or adapter.
fn verify_compact(frame: &[u8], key: &ModelIdentity) -> Result<compact::CompactFrame, CodecError> {
    match compact::decode_compact(frame, key) {
        Err(FrameError::Corrupt) => Err(CodecError::CorruptOrWrongPrompt),
        other => Ok(other?),
    }
}
