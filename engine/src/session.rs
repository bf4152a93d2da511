//! Sessions (one sequence) and batches (many independent sequences stepping together).

use crate::forward::{Core, Kv};
use crate::{EngineError, KernelLevel, Model, TokenId};

/// Options of a session or batch. `threads` and `kernel` never change results, only speed.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Worker threads, the calling thread included; 0 = every core this process may use. More
    /// than that is refused ([`EngineError::TooManyThreads`]) unless `oversubscribe` is set:
    /// the workers spin between the parallel sections of a step, and two spinning workers on
    /// one core mostly wait for each other.
    pub threads: usize,
    /// Allow `threads` beyond the cores (the thread-count tests do, to prove results do not
    /// depend on it on small machines). Slower, never different.
    pub oversubscribe: bool,
    /// Kernel level; `None` = `TENBIT_KERNEL` from the environment if set, else the fastest.
    pub kernel: Option<KernelLevel>,
    /// KV-cache capacity in positions, per sequence (capped at the model's training context).
    pub max_ctx: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 0,
            oversubscribe: false,
            kernel: None,
            max_ctx: 4096,
        }
    }
}

/// Rows pushed through the layers at once (bounds scratch memory in long prefills; the
/// chunking never changes results).
const UBATCH: usize = 64;

/// An inference session: one sequence's KV cache, scratch and a worker pool.
pub struct Session<'m> {
    core: Core<'m>,
    kv: Kv,
    cap: usize,
    logits: Vec<f32>,
}

/// A session's KV cache detached from its model borrow (see [`Session::take_cache`]).
///
/// It remembers which `Model` value filled it (by address, valid while that model lives), so
/// it cannot be restored into a session of another model of the same shape.
pub struct KvCache {
    model: usize,
    kv: Kv,
}

impl KvCache {
    /// Cached positions.
    pub fn len(&self) -> usize {
        self.kv.n_past
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.kv.n_past == 0
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("n_past", &self.kv.n_past)
            .finish()
    }
}

fn capacity(model: &Model, opts: &SessionOptions) -> usize {
    opts.max_ctx.min(model.cfg.n_ctx_train).max(1)
}

impl<'m> Session<'m> {
    /// A session on `model`: resolves the kernel level and starts the workers.
    pub fn new(model: &'m Model, opts: SessionOptions) -> Result<Self, EngineError> {
        let core = Core::new(model, &opts)?;
        Ok(Session {
            core,
            kv: Kv::new(model.cfg.n_layer),
            cap: capacity(model, &opts),
            logits: vec![0.0; model.cfg.n_vocab],
        })
    }

    /// The kernel level in use.
    pub fn kernel(&self) -> KernelLevel {
        self.core.level()
    }

    /// Worker threads in use (the caller included).
    pub fn threads(&self) -> usize {
        self.core.threads()
    }

    /// Cached positions.
    pub fn len(&self) -> usize {
        self.kv.n_past
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.kv.n_past == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Forget every position.
    pub fn reset(&mut self) {
        self.truncate(0);
    }

    /// Forget positions >= n (the cache keeps its allocation).
    pub fn truncate(&mut self, n: usize) {
        self.kv.truncate(n, self.core.model.cfg.kv_dim());
    }

    /// Move the KV cache out, leaving this session empty.
    ///
    /// A session borrows its model, so a long-lived owner such as the strong-model server cannot
    /// keep one between requests; it keeps the cache instead and puts it into the next request's
    /// session, re-feeding only what differs from the cached prefix. Because prefill chunking
    /// never changes the engine's results, the reply is the same as from a fresh session.
    pub fn take_cache(&mut self) -> KvCache {
        let model = self.core.model;
        KvCache {
            model: model as *const Model as usize,
            kv: std::mem::replace(&mut self.kv, Kv::new(model.cfg.n_layer)),
        }
    }

    /// Restore a cache from [`take_cache`](Self::take_cache) of a session on this same `Model`
    /// value. Refuses (and hands back) a cache of another model or one that does not fit this
    /// session's capacity. The logits of the last cached position are not kept: feed at least
    /// one token before reading them.
    pub fn put_cache(&mut self, kv: KvCache) -> Result<(), KvCache> {
        let model = self.core.model;
        let fits = kv.model == model as *const Model as usize
            && kv.kv.n_past <= self.cap
            && kv.kv.fits(model.cfg.n_layer, model.cfg.kv_dim());
        if !fits {
            return Err(kv);
        }
        self.kv = kv.kv;
        Ok(())
    }

    /// Feed tokens as one batch; return the logits after the last one.
    pub fn feed(&mut self, tokens: &[TokenId]) -> Result<&[f32], EngineError> {
        let n = tokens.len();
        if n == 0 {
            return Ok(&self.logits);
        }
        let mut last = Vec::new();
        self.run(
            tokens,
            &mut |i, l| {
                if i + 1 == n {
                    last = l.to_vec();
                }
            },
            false,
        )?;
        self.logits = last;
        Ok(&self.logits)
    }

    /// Feed tokens as one batch, handing each position's logits to `f(i, logits)` in order.
    pub fn feed_all(
        &mut self,
        tokens: &[TokenId],
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), EngineError> {
        let n = tokens.len();
        let mut keep_last = Vec::new();
        self.run(
            tokens,
            &mut |i, l| {
                if i + 1 == n {
                    keep_last = l.to_vec();
                }
                f(i, l)
            },
            true,
        )?;
        if n > 0 {
            self.logits = keep_last;
        }
        Ok(())
    }

    fn run(
        &mut self,
        tokens: &[TokenId],
        f: &mut dyn FnMut(usize, &[f32]),
        all: bool,
    ) -> Result<(), EngineError> {
        let cfg = &self.core.model.cfg;
        if let Some(t) = tokens.iter().find(|t| t.index() >= cfg.n_vocab) {
            return Err(EngineError::BadToken(t.0));
        }
        if self.kv.n_past + tokens.len() > self.cap {
            return Err(EngineError::ContextFull { capacity: self.cap });
        }
        let (n, nv) = (tokens.len(), cfg.n_vocab);
        let mut done = 0;
        for chunk in tokens.chunks(UBATCH) {
            let rows: Vec<(usize, TokenId)> = chunk.iter().map(|&t| (0, t)).collect();
            let want: Vec<bool> = (0..chunk.len()).map(|j| all || done + j + 1 == n).collect();
            let logits = self.core.forward(&mut [&mut self.kv], &rows, &want);
            let first = if all { done } else { n - 1 };
            for (j, l) in logits.chunks_exact(nv).enumerate() {
                f(first + j, l);
            }
            done += chunk.len();
        }
        Ok(())
    }
}

/// A sequence of a [`Batch`]. Ids are never reused: one of a removed sequence stays invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqId {
    slot: u32,
    gen: u32,
}

struct Seq {
    gen: u32,
    kv: Kv,
    logits: Vec<f32>,
}

/// Many independent sequences (own KV caches, own positions) that step together: one pass
/// over the weights computes the next-token logits of every sequence fed in a step.
///
/// Each sequence's logits are bit-identical to running it alone in a [`Session`] (same
/// kernels, same per-row float sequence; attention reads only the row's own cache), whatever
/// the other sequences, their lengths, the batch size or the thread count. This is what makes
/// drawing many candidates (pick mode, evaluation) cheap: decoding is bound by streaming the
/// weights, and a step of 8 sequences streams them once.
///
/// ```no_run
/// # use tenbit_engine::{Batch, Model, SessionOptions, TokenId};
/// # fn main() -> Result<(), tenbit_engine::EngineError> {
/// let model = Model::load("model.gguf")?;
/// let mut batch = Batch::new(&model, SessionOptions::default(), 8)?;
/// let a = batch.add()?;
/// let b = batch.add()?;
/// // Prefill both (different lengths), then step them one token each.
/// let res = batch.step(&[(a, &[TokenId(1), TokenId(2)][..]), (b, &[TokenId(3)][..])])?;
/// assert!(res.iter().all(|r| r.is_ok()));
/// let next_a = batch.logits(a)?.len();
/// # let _ = next_a;
/// # Ok(()) }
/// ```
pub struct Batch<'m> {
    core: Core<'m>,
    seqs: Vec<Option<Seq>>,
    max_seqs: usize,
    cap: usize,
    next_gen: u32,
}

impl<'m> Batch<'m> {
    /// A batch holding at most `max_seqs` live sequences, each with `opts.max_ctx` positions.
    pub fn new(
        model: &'m Model,
        opts: SessionOptions,
        max_seqs: usize,
    ) -> Result<Self, EngineError> {
        if max_seqs == 0 {
            return Err(EngineError::BatchFull { max: 0 });
        }
        Ok(Batch {
            core: Core::new(model, &opts)?,
            seqs: Vec::new(),
            max_seqs,
            cap: capacity(model, &opts),
            next_gen: 0,
        })
    }

    /// The kernel level in use.
    pub fn kernel(&self) -> KernelLevel {
        self.core.level()
    }

    /// Worker threads in use (the caller included).
    pub fn threads(&self) -> usize {
        self.core.threads()
    }

    /// Live sequences.
    pub fn len(&self) -> usize {
        self.seqs.iter().filter(|s| s.is_some()).count()
    }

    /// Whether no sequence is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most live sequences this batch holds.
    pub fn max_seqs(&self) -> usize {
        self.max_seqs
    }

    /// Positions each sequence's cache can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn insert(&mut self, kv: Kv, logits: Vec<f32>) -> Result<SeqId, EngineError> {
        if self.len() >= self.max_seqs {
            return Err(EngineError::BatchFull { max: self.max_seqs });
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let seq = Some(Seq { gen, kv, logits });
        let slot = match self.seqs.iter().position(|s| s.is_none()) {
            Some(i) => {
                self.seqs[i] = seq;
                i
            }
            None => {
                self.seqs.push(seq);
                self.seqs.len() - 1
            }
        };
        Ok(SeqId {
            slot: slot as u32,
            gen,
        })
    }

    /// Start an empty sequence; [`EngineError::BatchFull`] beyond `max_seqs` live ones.
    pub fn add(&mut self) -> Result<SeqId, EngineError> {
        let cfg = &self.core.model.cfg;
        self.insert(Kv::new(cfg.n_layer), vec![0.0; cfg.n_vocab])
    }

    /// A new sequence with a copy of `id`'s cache and logits (candidates sharing a prompt
    /// prefill it once). Continues bit-identically to the original.
    pub fn fork(&mut self, id: SeqId) -> Result<SeqId, EngineError> {
        let s = self.seq(id)?;
        let (kv, logits) = (s.kv.clone(), s.logits.clone());
        self.insert(kv, logits)
    }

    /// End a sequence and free its cache.
    pub fn remove(&mut self, id: SeqId) -> Result<(), EngineError> {
        self.seq(id)?;
        self.seqs[id.slot as usize] = None;
        Ok(())
    }

    fn seq(&self, id: SeqId) -> Result<&Seq, EngineError> {
        match self.seqs.get(id.slot as usize) {
            Some(Some(s)) if s.gen == id.gen => Ok(s),
            _ => Err(EngineError::UnknownSeq),
        }
    }

    fn seq_mut(&mut self, id: SeqId) -> Result<&mut Seq, EngineError> {
        match self.seqs.get_mut(id.slot as usize) {
            Some(Some(s)) if s.gen == id.gen => Ok(s),
            _ => Err(EngineError::UnknownSeq),
        }
    }

    /// Cached positions of `id`.
    pub fn seq_len(&self, id: SeqId) -> Result<usize, EngineError> {
        Ok(self.seq(id)?.kv.n_past)
    }

    /// Forget positions >= n of `id`.
    pub fn truncate(&mut self, id: SeqId, n: usize) -> Result<(), EngineError> {
        let kvd = self.core.model.cfg.kv_dim();
        self.seq_mut(id)?.kv.truncate(n, kvd);
        Ok(())
    }

    /// The logits after the last token fed to `id` (zeros before the first).
    pub fn logits(&self, id: SeqId) -> Result<&[f32], EngineError> {
        Ok(&self.seq(id)?.logits)
    }

    /// Feed each listed sequence its tokens (any number, prefill or one decoding step) in one
    /// pass over the weights per chunk of rows, keeping each one's logits after its last token.
    ///
    /// The outer error is a malformed call (an unknown or repeated id): nothing is fed. The
    /// inner results are per sequence, in the order given: a sequence whose tokens do not fit
    /// its cache ([`EngineError::ContextFull`]) or name no vocabulary entry is left untouched
    /// with that error while the others are fed as if it had not been listed.
    #[allow(clippy::type_complexity)] // the two levels of errors are the point, documented above
    pub fn step(
        &mut self,
        feeds: &[(SeqId, &[TokenId])],
    ) -> Result<Vec<Result<(), EngineError>>, EngineError> {
        self.run(feeds, None)
    }

    /// As [`step`](Self::step), and hand every fed position's logits to `f(i, j, logits)`
    /// (`i` = index into `feeds`, `j` = position within that feed's tokens), in row order:
    /// what an encoder needs to code several messages in one pass over the weights.
    #[allow(clippy::type_complexity)] // as `step`
    pub fn step_all(
        &mut self,
        feeds: &[(SeqId, &[TokenId])],
        f: &mut dyn FnMut(usize, usize, &[f32]),
    ) -> Result<Vec<Result<(), EngineError>>, EngineError> {
        self.run(feeds, Some(f))
    }

    #[allow(clippy::type_complexity)] // as `step`
    fn run(
        &mut self,
        feeds: &[(SeqId, &[TokenId])],
        mut all: Option<&mut dyn FnMut(usize, usize, &[f32])>,
    ) -> Result<Vec<Result<(), EngineError>>, EngineError> {
        for (i, (id, _)) in feeds.iter().enumerate() {
            self.seq(*id)?;
            if feeds[..i].iter().any(|(o, _)| o == id) {
                return Err(EngineError::DuplicateSeq);
            }
        }
        let (nv, cap) = (self.core.model.cfg.n_vocab, self.cap);
        let results: Vec<Result<(), EngineError>> = feeds
            .iter()
            .map(|(id, toks)| {
                let s = self.seq(*id)?;
                if let Some(t) = toks.iter().find(|t| t.index() >= nv) {
                    return Err(EngineError::BadToken(t.0));
                }
                if s.kv.n_past + toks.len() > cap {
                    return Err(EngineError::ContextFull { capacity: cap });
                }
                Ok(())
            })
            .collect();
        // Every row to run: (slot, token, feed index, position in the feed, last of the feed).
        let mut rows_all: Vec<(usize, TokenId, usize, usize, bool)> = Vec::new();
        for (fi, ((id, toks), r)) in feeds.iter().zip(&results).enumerate() {
            if r.is_ok() {
                let n = toks.len();
                rows_all.extend(
                    toks.iter()
                        .enumerate()
                        .map(|(j, &t)| (id.slot as usize, t, fi, j, j + 1 == n)),
                );
            }
        }
        for chunk in rows_all.chunks(UBATCH) {
            // The chunk's sequences in first-appearance order, as indices into `kvs`.
            let mut slots: Vec<usize> = Vec::new();
            for r in chunk {
                if slots.last() != Some(&r.0) {
                    slots.push(r.0);
                }
            }
            let mut by_slot: Vec<Option<&mut Seq>> =
                self.seqs.iter_mut().map(|s| s.as_mut()).collect();
            let mut seqs: Vec<&mut Seq> = slots
                .iter()
                .map(|&s| by_slot[s].take().expect("a live sequence listed once"))
                .collect();
            let rows: Vec<(usize, TokenId)> = chunk
                .iter()
                .map(|r| (slots.iter().position(|&s| s == r.0).unwrap(), r.1))
                .collect();
            let want: Vec<bool> = chunk.iter().map(|r| r.4 || all.is_some()).collect();
            let logits = {
                let mut kvs: Vec<&mut Kv> = seqs.iter_mut().map(|s| &mut s.kv).collect();
                self.core.forward(&mut kvs, &rows, &want)
            };
            let mut it = logits.chunks_exact(nv);
            for (r, (&(li, _), &w)) in chunk.iter().zip(rows.iter().zip(&want)) {
                if w {
                    let l = it.next().expect("one per wanted row");
                    if let Some(f) = all.as_mut() {
                        f(r.2, r.3, l);
                    }
                    if r.4 {
                        seqs[li].logits.copy_from_slice(l);
                    }
                }
            }
        }
        Ok(results)
    }
}
