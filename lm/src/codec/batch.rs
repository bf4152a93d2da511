//! Several messages encoded at once: their prefills and coding step together through one
//! engine [`Batch`], so short messages share passes over the weights. Every frame is
//! byte-identical to encoding that message alone ([`LmCodec::encode_message`]): the engine
//! gives each sequence of a batch the logits it has alone, and each message here is fed the
//! same tokens, slides its window at the same points and codes the same symbols with the same
//! CDFs as the one-message driver.
//!
//! A message's run is laid out flat first ([`Plan`]): every token the model is fed, in order,
//! and per position the symbol (if any) coded with the CDF that follows it. The driver then
//! only feeds plans and codes where they say, so it cannot drift from the one-message path
//! in what it feeds; the byte-identity tests in `lm/tests/codec.rs` hold it to it.

use tenbit_engine::{Batch, SeqId};
use tenbit_wire::coder::{encode_symbol, RangeEncoder};
use tenbit_wire::frame::{Mode, FRAME_VERSION};
use tenbit_wire::freq::{Calibration, Cdf, CdfTable};
use tenbit_wire::TokenId;

use super::{CodecError, LmCodec, PromptUse};
use crate::tokenizer::Tokenizer;

/// One message's coding run, flat: `stream[p]` is the p-th token fed, and `code[p]` the symbol
/// coded with the CDF predicting the token after it. `first` is coded with the initial
/// (uniform) table before anything is fed; the chat layouts always feed a context first, so
/// it stays `None` in practice, but the one-message driver would do exactly that.
struct Plan {
    stream: Vec<TokenId>,
    code: Vec<Option<TokenId>>,
    first: Option<TokenId>,
}

impl Plan {
    /// Tokens fed, not coded (a chat-template context).
    fn feed(&mut self, toks: &[TokenId]) {
        self.stream.extend_from_slice(toks);
        self.code.extend(std::iter::repeat_n(None, toks.len()));
    }

    /// A coded segment, as `LmCodec::code_segment` codes it: `toks[0]` with the CDF after
    /// the last token fed, then the model is fed `model_toks` and the CDF after `model_toks[i]`
    /// codes `toks[i + 1]`, the last one the end-of-turn marker.
    fn segment(&mut self, toks: &[TokenId], model_toks: &[TokenId], eot: TokenId) {
        let head = toks.first().copied().unwrap_or(eot);
        match self.code.last_mut() {
            Some(c) => *c = Some(head),
            None => self.first = Some(head),
        }
        self.stream.extend_from_slice(model_toks);
        self.code
            .extend((0..model_toks.len()).map(|i| Some(toks.get(i + 1).copied().unwrap_or(eot))));
    }
}

/// Code one symbol as `LmCodec::code_segment` does: a virtual byte token (a byte the vocabulary
/// lacks) as the escape token then its 8 bits at probability 1/2 each.
fn code_symbol(
    tok: &Tokenizer,
    enc: &mut RangeEncoder<Vec<u8>>,
    cdf: Cdf<'_>,
    t: TokenId,
) -> Result<(), CodecError> {
    match tok.virtual_byte(t) {
        Some(b) => {
            encode_symbol(enc, cdf, tok.escape().index())?;
            for k in 0..8 {
                enc.encode_bit((b >> k) & 1 == 1)?;
            }
        }
        None => encode_symbol(enc, cdf, t.index())?,
    }
    Ok(())
}

/// A message in flight: its sequence, where its plan is, its coder.
struct Live {
    /// Index into the caller's messages.
    msg: usize,
    id: SeqId,
    /// Next stream position to feed.
    pos: usize,
    enc: RangeEncoder<Vec<u8>>,
    table: CdfTable,
    err: Option<CodecError>,
}

/// What one message contributes to a step.
#[derive(Clone, Copy)]
enum Fed {
    /// Stream positions `pos..pos + n` (coded where the plan says).
    Chunk { pos: usize, n: usize },
    /// A window slide's re-feed of recent history (never coded, as in the one-message path).
    Keep,
}

impl LmCodec<'_> {
    /// The flat plan of [`LmCodec::encode_payload_with`] for one message.
    fn plan(&self, prompt: PromptUse<'_>, text: &[u8]) -> Plan {
        let mut p = Plan {
            stream: Vec::new(),
            code: Vec::new(),
            first: None,
        };
        let text_toks = self.tok.encode(text);
        match prompt {
            PromptUse::None => p.feed(&self.chat.bare_assistant_prefix(&self.tok, None)),
            PromptUse::Known(pr) => p.feed(&self.known_prompt_context(pr)),
            PromptUse::Sent(pr) => {
                let pt = self.tok.encode(pr);
                p.feed(&self.chat.user_prefix(&self.tok, None));
                p.segment(&pt, &self.model_tokens(&pt), self.eot);
                p.feed(&self.after_user_turn());
            }
        }
        p.segment(&text_toks, &self.model_tokens(&text_toks), self.eot);
        p
    }

    /// Encode several messages (`(prompt use, text)` each) into frames of `mode`, at most
    /// `max_batch` of them stepping together (a finished one makes room for the next). Each
    /// frame is byte-identical to [`encode_message`](Self::encode_message) of that message
    /// alone. The outer error is a setup failure (the engine refused the batch); a message
    /// that fails gets its own error while the others are coded on.
    pub fn encode_messages(
        &self,
        msgs: &[(PromptUse<'_>, &[u8])],
        mode: Mode,
        max_batch: usize,
    ) -> Result<Vec<Result<Vec<u8>, CodecError>>, CodecError> {
        let cal = Calibration::CURRENT;
        let mut opts = self.opts.clone();
        opts.max_ctx = self.window;
        let mut b = Batch::new(self.model, opts, max_batch.max(1))?;
        let cap = b.capacity();
        let nv = self.model.config().n_vocab;
        let plans: Vec<Plan> = msgs.iter().map(|(p, t)| self.plan(*p, t)).collect();
        let mut out: Vec<Option<Result<Vec<u8>, CodecError>>> =
            (0..msgs.len()).map(|_| None).collect();
        let mut live: Vec<Live> = Vec::new();
        let mut next = 0usize;
        loop {
            // Admit messages while there is room.
            while live.len() < b.max_seqs() && next < msgs.len() {
                let mut l = Live {
                    msg: next,
                    id: b.add()?,
                    pos: 0,
                    enc: RangeEncoder::new(Vec::new()),
                    table: CdfTable::uniform(nv)?,
                    err: None,
                };
                if let Some(t) = plans[next].first {
                    if let Err(e) = code_symbol(&self.tok, &mut l.enc, l.table.cdf(), t) {
                        l.err = Some(e);
                    }
                }
                live.push(l);
                next += 1;
            }
            // Finish messages whose plan is done (or that failed).
            let mut i = 0;
            while i < live.len() {
                let l = &live[i];
                if l.err.is_none() && l.pos < plans[l.msg].stream.len() {
                    i += 1;
                    continue;
                }
                let l = live.swap_remove(i);
                b.remove(l.id)?;
                out[l.msg] = Some(match l.err {
                    Some(e) => Err(e),
                    None => l
                        .enc
                        .finish()
                        .map_err(CodecError::from)
                        .and_then(|payload| {
                            self.frame_of(FRAME_VERSION, mode, msgs[l.msg].0, &payload)
                        }),
                });
            }
            if live.is_empty() {
                if next < msgs.len() {
                    continue;
                }
                break;
            }
            // One step: every live message feeds its next chunk (up to its cache's room), or
            // slides its window as the one-message path does when its cache is full.
            let mut fed: Vec<Fed> = Vec::with_capacity(live.len());
            let mut feeds: Vec<(SeqId, &[TokenId])> = Vec::with_capacity(live.len());
            for l in &live {
                let s = &plans[l.msg].stream;
                let len = b.seq_len(l.id)?;
                if len >= cap {
                    b.truncate(l.id, 0)?;
                    feeds.push((l.id, &s[l.pos - cap / 2..l.pos]));
                    fed.push(Fed::Keep);
                } else {
                    let n = (s.len() - l.pos).min(cap - len);
                    feeds.push((l.id, &s[l.pos..l.pos + n]));
                    fed.push(Fed::Chunk { pos: l.pos, n });
                }
            }
            let tok = &self.tok;
            let results = b.step_all(&feeds, &mut |fi, j, logits| {
                let Fed::Chunk { pos, .. } = fed[fi] else {
                    return;
                };
                let l = &mut live[fi];
                if l.err.is_some() {
                    return;
                }
                let Some(t) = plans[l.msg].code[pos + j] else {
                    return;
                };
                if let Err(e) = l.table.set_from_logits(cal, logits) {
                    l.err = Some(e.into());
                    return;
                }
                if let Err(e) = code_symbol(tok, &mut l.enc, l.table.cdf(), t) {
                    l.err = Some(e);
                }
            })?;
            for ((l, f), r) in live.iter_mut().zip(&fed).zip(results) {
                match (r, f) {
                    (Err(e), _) => l.err = l.err.take().or(Some(e.into())),
                    (Ok(()), Fed::Chunk { n, .. }) => l.pos += n,
                    (Ok(()), Fed::Keep) => {}
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every message finished"))
            .collect())
    }
}
