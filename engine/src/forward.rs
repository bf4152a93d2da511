//! The forward pass over a set of rows: tokens of one or more independent sequences.
//!
//! One pass serves a prefill chunk of one sequence, one decoding step of many, or any mix:
//! the weights are streamed once for all rows, and every per-row computation (norm, the
//! quantised dot products, rope, attention over *its own* sequence's cache) is the same fixed
//! float sequence whatever else shares the pass. That is why batched and alone, chunked and
//! token by token, 1 and N threads all give the same bits.

use crate::kernels::{KernelLevel, Kernels};
use crate::lora::Target;
use crate::model::{Mat, Model};
use crate::pool::{split, Pool, SharedMut};
use crate::quant::{dequant_row, quantize_row, QRow, QK};
use crate::{math, EngineError, SessionOptions, TokenId};

/// Rows per multi-token kernel call in batched products: one group's weights stay in L1 while
/// every token of the batch runs over them; work splits are aligned to it.
pub(crate) const ROW_GROUP: usize = crate::kernels::TILE_ROWS;

/// Positions per tile of the key cache: keys are stored `[tile][kv dim][KT]`, so the attention
/// scores of KT positions are KT independent lanes (each its own sequential sum over the head
/// dimension, exactly the scalar order) that the compiler vectorises.
pub(crate) const KT: usize = 8;

/// Attention work (positions x heads) below which one thread does it all: a hand-off costs
/// more than it saves.
const PAR_ATTENTION_MIN: usize = 256;

/// Values (rows x width) below which norms and quantisation stay on one thread.
const PAR_ROWS_MIN: usize = 1 << 16;

/// One sequence's KV cache.
#[derive(Clone)]
pub(crate) struct Kv {
    pub(crate) n_past: usize,
    /// Per layer, tiled keys (see [`KT`]); always a whole number of tiles.
    pub(crate) k: Vec<Vec<f32>>,
    /// Per layer, values `[pos][kv dim]`.
    pub(crate) v: Vec<Vec<f32>>,
}

impl Kv {
    pub(crate) fn new(n_layer: usize) -> Kv {
        Kv {
            n_past: 0,
            k: vec![Vec::new(); n_layer],
            v: vec![Vec::new(); n_layer],
        }
    }

    /// Length of one layer's key storage for `n` positions.
    pub(crate) fn k_len(n: usize, kvd: usize) -> usize {
        n.div_ceil(KT) * KT * kvd
    }

    /// Forget positions >= n (allocations are kept).
    pub(crate) fn truncate(&mut self, n: usize, kvd: usize) {
        if n >= self.n_past {
            return;
        }
        for (k, v) in self.k.iter_mut().zip(&mut self.v) {
            k.truncate(Kv::k_len(n, kvd));
            v.truncate(n * kvd);
        }
        self.n_past = n;
    }

    /// Whether the layer storage is consistent with `n_past` for this shape.
    pub(crate) fn fits(&self, n_layer: usize, kvd: usize) -> bool {
        self.k.len() == n_layer
            && self.v.len() == n_layer
            && self
                .k
                .iter()
                .all(|l| l.len() == Kv::k_len(self.n_past, kvd))
            && self.v.iter().all(|l| l.len() == self.n_past * kvd)
    }
}

/// Tasks per worker in a parallel section: enough that a worker the OS delays holds up only a
/// small part of the work, few enough that claiming them costs nothing.
const TASKS_PER_WORKER: usize = 4;

/// A contiguous share of one matrix's rows: `(matrix index in its group, rows)`.
type Piece = (usize, std::ops::Range<usize>);
/// The tasks (each a list of pieces) of a group of matrices that read the same activations.
type Split = Vec<Vec<Piece>>;

/// The tasks of every matrix product of one layer, cut once per session.
struct LayerPlan {
    qkv: Split,
    o: Split,
    gate_up: Split,
    down: Split,
}

/// Cut a group of matrices into `workers` contiguous tasks, balanced by weight bytes
/// (decode streams the weights; prefill's work per row is proportional to them too), on
/// boundaries of [`ROW_GROUP`] rows.
fn plan(mats: &[&Mat], workers: usize) -> Split {
    let total: usize = mats.iter().map(|m| m.rows * m.row_bytes).sum();
    let mut out: Split = vec![Vec::new(); workers];
    let mut acc = 0usize;
    for (mi, m) in mats.iter().enumerate() {
        let mut r = 0;
        while r < m.rows {
            let r1 = (r + ROW_GROUP).min(m.rows);
            let cost = (r1 - r) * m.row_bytes;
            let w = ((acc + cost / 2) * workers / total.max(1)).min(workers - 1);
            match out[w].last_mut() {
                Some((pm, pr)) if *pm == mi && pr.end == r => pr.end = r1,
                _ => out[w].push((mi, r..r1)),
            }
            acc += cost;
            r = r1;
        }
    }
    out
}

/// Cut `costs.len()` items (in order) into `workers` contiguous ranges, balanced by cost.
fn split_by_cost(costs: &[usize], workers: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = costs.iter().sum();
    let mut out = vec![0..0; workers];
    let mut acc = 0usize;
    let mut start = 0;
    let mut cur = 0;
    for (i, &c) in costs.iter().enumerate() {
        let w = ((acc + c / 2) * workers / total.max(1)).min(workers - 1);
        while cur < w {
            out[cur] = start..i;
            start = i;
            cur += 1;
        }
        acc += c;
    }
    out[cur] = start..costs.len();
    for o in out.iter_mut().skip(cur + 1) {
        *o = costs.len()..costs.len();
    }
    out
}

/// What every sequence of a session or batch shares: kernels, workers, rope table and the
/// work splits.
pub(crate) struct Core<'m> {
    pub(crate) model: &'m Model,
    pub(crate) k: Kernels,
    pool: Pool,
    /// (cos, sin) per position and rotary pair, grown as positions are reached.
    rope: Vec<(f32, f32)>,
    plans: Vec<LayerPlan>,
    out_plan: Split,
}

fn avail() -> String {
    KernelLevel::available()
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cores this process may run on (affinity and cgroup limits included).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl<'m> Core<'m> {
    pub(crate) fn new(model: &'m Model, opts: &SessionOptions) -> Result<Self, EngineError> {
        let level = match opts.kernel {
            Some(l) => l,
            None => match std::env::var("TENBIT_KERNEL") {
                Ok(s) if !s.is_empty() => s
                    .parse()
                    .map_err(|e: String| EngineError::KernelUnavailable(e, avail()))?,
                _ => KernelLevel::detect(),
            },
        };
        let k = Kernels::new(level)
            .ok_or_else(|| EngineError::KernelUnavailable(level.to_string(), avail()))?;
        let cores = cores();
        let threads = match opts.threads {
            0 => cores,
            n if n > cores && !opts.oversubscribe => {
                return Err(EngineError::TooManyThreads {
                    requested: n,
                    cores,
                })
            }
            n => n,
        };
        let pool = Pool::new(threads).map_err(|e| EngineError::Threads(e.to_string()))?;
        let w = if pool.workers() > 1 {
            pool.workers() * TASKS_PER_WORKER
        } else {
            1
        };
        let plans = model
            .layers
            .iter()
            .map(|l| LayerPlan {
                qkv: plan(&[&l.wq, &l.wk, &l.wv], w),
                o: plan(&[&l.wo], w),
                gate_up: plan(&[&l.gate, &l.up], w),
                down: plan(&[&l.down], w),
            })
            .collect();
        let out_plan = plan(&[&model.output], w);
        Ok(Core {
            model,
            k,
            pool,
            rope: Vec::new(),
            plans,
            out_plan,
        })
    }

    pub(crate) fn level(&self) -> KernelLevel {
        self.k.level
    }

    pub(crate) fn threads(&self) -> usize {
        self.pool.workers()
    }

    /// Tasks a parallel section is cut into.
    fn tasks(&self) -> usize {
        self.pool.workers() * TASKS_PER_WORKER
    }

    fn grow_rope(&mut self, upto: usize) {
        let pairs = self.model.cfg.n_rot / 2;
        while self.rope.len() < upto * pairs {
            let pos = (self.rope.len() / pairs) as f64;
            for &th in &self.model.rope_freqs {
                let (s, c) = math::sin_cos_f64(pos * th);
                self.rope.push((c as f32, s as f32));
            }
        }
    }

    /// `outs[m][t * rows_m + r] = mats[m][r] . acts[t]` for every token t, each worker doing
    /// its pieces of `split` (whole rows, so the split never changes a result).
    fn matmul(&self, mats: &[&Mat], split: &Split, acts: &[QRow], outs: &mut [&mut Vec<f32>]) {
        let b = acts.len();
        for (m, o) in mats.iter().zip(outs.iter_mut()) {
            debug_assert!(acts.iter().all(|a| a.blocks() * QK == m.cols));
            o.clear();
            o.resize(b * m.rows, 0.0);
        }
        let views: Vec<SharedMut<f32>> = outs.iter_mut().map(|o| SharedMut::new(o)).collect();
        let file = self.model.gguf().bytes();
        let k = &self.k;
        self.pool.run(split.len(), &|w| {
            let mut buf = vec![0.0f32; if b > 1 { ROW_GROUP * b } else { 0 }];
            for (mi, rows) in &split[w] {
                let m = mats[*mi];
                let out = &views[*mi];
                if b == 1 {
                    // SAFETY: the pieces of a split are disjoint row ranges, and with one
                    // token a row range is an output range.
                    let o = unsafe { out.slice(rows.clone()) };
                    k.dot_rows(m.ty, m.rows(file, rows.start, o.len()), &acts[0], o);
                    continue;
                }
                // A tile of rows for every token: each weight block is unpacked once for a
                // few tokens, and the group's rows stay in cache for all of them.
                let mut g0 = rows.start;
                while g0 < rows.end {
                    let n = (rows.end - g0).min(ROW_GROUP);
                    let tile = &mut buf[..n * b];
                    k.dot_tile(m.ty, m.rows(file, g0, n), acts, tile);
                    for (t, v) in tile.chunks_exact(n).enumerate() {
                        // SAFETY: token t's outputs of rows g0..g0+n belong to this task's
                        // piece only (pieces are disjoint row ranges).
                        let o = unsafe { out.slice(t * m.rows + g0..t * m.rows + g0 + n) };
                        o.copy_from_slice(v);
                    }
                    g0 += n;
                }
            }
        });
    }

    /// `f(i, row i)` for each of the `n` rows of `data` (`width` values each) and of `acts`,
    /// split over the workers when there are enough rows to pay for it.
    fn per_row(
        &self,
        data: &mut [f32],
        width: usize,
        acts: &mut [QRow],
        f: &(dyn Fn(usize, &mut [f32], &mut QRow) + Sync),
    ) {
        let n = acts.len();
        if n < 4 || n * width < PAR_ROWS_MIN || self.pool.workers() == 1 {
            for (i, (x, a)) in data
                .chunks_exact_mut(width)
                .zip(acts.iter_mut())
                .enumerate()
            {
                f(i, x, a);
            }
            return;
        }
        let parts = split(n, self.tasks(), 1);
        let (dv, av) = (SharedMut::new(data), SharedMut::new(acts));
        self.pool.run(parts.len(), &|w| {
            for i in parts[w].clone() {
                // SAFETY: row i belongs to task w only (`split` ranges are disjoint).
                let (x, a) = unsafe { (dv.slice(i * width..(i + 1) * width), av.slice(i..i + 1)) };
                f(i, x, &mut a[0]);
            }
        });
    }

    /// Run `rows` (`(sequence index into kvs, token)`, each sequence's rows contiguous and in
    /// order) through the network, appending to each sequence's cache. Returns the logits of
    /// the rows marked in `want`, in row order. Callers have checked tokens and capacities.
    pub(crate) fn forward(
        &mut self,
        kvs: &mut [&mut Kv],
        rows: &[(usize, TokenId)],
        want: &[bool],
    ) -> Vec<f32> {
        let cfg = &self.model.cfg;
        let (d, kvd, hd, nh, nkv, nff) = (
            cfg.n_embd,
            cfg.kv_dim(),
            cfg.head_dim(),
            cfg.n_head,
            cfg.n_head_kv,
            cfg.n_ff,
        );
        let b = rows.len();
        let mut cnt = vec![0usize; kvs.len()];
        let pos: Vec<usize> = rows
            .iter()
            .map(|&(s, _)| {
                cnt[s] += 1;
                kvs[s].n_past + cnt[s] - 1
            })
            .collect();
        debug_assert!(
            {
                let mut seen = vec![false; kvs.len()];
                rows.iter().enumerate().all(|(i, &(s, _))| {
                    i > 0 && rows[i - 1].0 == s || !std::mem::replace(&mut seen[s], true)
                })
            },
            "each sequence's rows must be contiguous"
        );
        self.grow_rope(pos.iter().max().map_or(0, |p| p + 1));
        let model = self.model;
        let file = model.gguf().bytes();
        let mut x = vec![0.0f32; b * d];
        for (t, (_, tok)) in rows.iter().enumerate() {
            dequant_row(
                model.tok_embd.ty,
                model.tok_embd.row(file, tok.index()),
                &mut x[t * d..(t + 1) * d],
            );
        }
        let mut acts: Vec<QRow> = vec![QRow::default(); b];
        let (mut q, mut k, mut v, mut att, mut tmp, mut g, mut u) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            vec![0.0f32; b * d],
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let pairs = cfg.n_rot / 2;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let eps = cfg.rms_eps;
        let ad = model.adapter.as_ref();
        // Adapter inputs: normalised rows (q/k/v, gate/up), attention output (o), ffn hidden (down).
        let mut xn = if ad.is_some() {
            vec![0.0f32; b * d]
        } else {
            Vec::new()
        };
        let lora = |li: usize, t: Target, x: &[f32], y: &mut [f32]| {
            if let Some(a) = ad {
                a.apply(li, t, x, y, b);
            }
        };
        // Attention tasks (row, head), balanced by the positions each attends to.
        let att_cost: Vec<usize> = (0..b * nh).map(|i| pos[i / nh] + 1).collect();
        let att_work: usize = att_cost.iter().sum();
        let att_parts = (self.pool.workers() > 1 && att_work >= PAR_ATTENTION_MIN)
            .then(|| split_by_cost(&att_cost, self.tasks()));
        for (li, layer) in model.layers.iter().enumerate() {
            let plan = &self.plans[li];
            self.norm_quant(
                &x,
                &layer.attn_norm,
                eps,
                &mut acts,
                ad.map(|_| &mut xn[..]),
            );
            self.matmul(
                &[&layer.wq, &layer.wk, &layer.wv],
                &plan.qkv,
                &acts,
                &mut [&mut q, &mut k, &mut v],
            );
            lora(li, Target::Q, &xn, &mut q);
            lora(li, Target::K, &xn, &mut k);
            lora(li, Target::V, &xn, &mut v);
            for (bias, dst, w) in [
                (&layer.bq, &mut q, d),
                (&layer.bk, &mut k, kvd),
                (&layer.bv, &mut v, kvd),
            ] {
                if let Some(bias) = bias {
                    for row in dst.chunks_exact_mut(w) {
                        for (o, bb) in row.iter_mut().zip(bias) {
                            *o += *bb;
                        }
                    }
                }
            }
            for (t, &p) in pos.iter().enumerate() {
                let rope = &self.rope[p * pairs..(p + 1) * pairs];
                for h in 0..nh {
                    apply_rope(&mut q[t * d + h * hd..][..hd], rope, model.rope_neox);
                }
                for h in 0..nkv {
                    apply_rope(&mut k[t * kvd + h * hd..][..hd], rope, model.rope_neox);
                }
            }
            // Append this layer's keys (tiled) and values to each row's own sequence.
            for (t, (&(s, _), &p)) in rows.iter().zip(&pos).enumerate() {
                let kc = &mut kvs[s].k[li];
                kc.resize(Kv::k_len(p + 1, kvd), 0.0);
                let tile = &mut kc[p / KT * KT * kvd..][..KT * kvd];
                for (c, &kv) in k[t * kvd..(t + 1) * kvd].iter().enumerate() {
                    tile[c * KT + p % KT] = kv;
                }
                let vc = &mut kvs[s].v[li];
                debug_assert_eq!(vc.len(), p * kvd);
                vc.extend_from_slice(&v[t * kvd..(t + 1) * kvd]);
            }
            {
                let kvs: &[&mut Kv] = kvs;
                let (q, pos) = (&q, &pos);
                let task = |idx: usize, out: &mut [f32], s: &mut Vec<f32>| {
                    let (t, h) = (idx / nh, idx % nh);
                    let kv = &*kvs[rows[t].0];
                    attend(
                        &q[t * d + h * hd..][..hd],
                        &kv.k[li],
                        &kv.v[li],
                        pos[t] + 1,
                        h / group,
                        (hd, kvd),
                        scale,
                        out,
                        s,
                    );
                };
                match &att_parts {
                    Some(parts) => {
                        let view = SharedMut::new(&mut att);
                        self.pool.run(parts.len(), &|w| {
                            let mut s = Vec::new();
                            for idx in parts[w].clone() {
                                // SAFETY: task idx writes head slot idx only; the parts
                                // are disjoint.
                                let o = unsafe { view.slice(idx * hd..(idx + 1) * hd) };
                                task(idx, o, &mut s);
                            }
                        })
                    }
                    None => {
                        let mut s = Vec::new();
                        for (idx, o) in att.chunks_exact_mut(hd).enumerate() {
                            task(idx, o, &mut s);
                        }
                    }
                }
            }
            self.per_row(&mut att, d, &mut acts, &|_, x, a| quantize_row(x, a));
            self.matmul(&[&layer.wo], &plan.o, &acts, &mut [&mut tmp]);
            lora(li, Target::O, &att, &mut tmp);
            for (xi, ti) in x.iter_mut().zip(&tmp) {
                *xi += *ti;
            }
            self.norm_quant(&x, &layer.ffn_norm, eps, &mut acts, ad.map(|_| &mut xn[..]));
            self.matmul(
                &[&layer.gate, &layer.up],
                &plan.gate_up,
                &acts,
                &mut [&mut g, &mut u],
            );
            lora(li, Target::Gate, &xn, &mut g);
            lora(li, Target::Up, &xn, &mut u);
            let uu = &u;
            self.per_row(&mut g, nff, &mut acts, &|i, gi, a| {
                for (gv, uv) in gi.iter_mut().zip(&uu[i * nff..(i + 1) * nff]) {
                    *gv = math::silu(*gv) * *uv;
                }
                quantize_row(gi, a);
            });
            self.matmul(&[&layer.down], &plan.down, &acts, &mut [&mut tmp]);
            lora(li, Target::Down, &g, &mut tmp);
            for (xi, ti) in x.iter_mut().zip(&tmp) {
                *xi += *ti;
            }
        }
        for (s, c) in cnt.iter().enumerate() {
            kvs[s].n_past += c;
        }
        let keep: Vec<usize> = (0..b).filter(|&t| want[t]).collect();
        if keep.is_empty() {
            return Vec::new();
        }
        let mut tail = Vec::with_capacity(keep.len() * d);
        for &t in &keep {
            tail.extend_from_slice(&x[t * d..(t + 1) * d]);
        }
        let mut oacts = vec![QRow::default(); keep.len()];
        self.norm_quant(&tail, &model.output_norm, eps, &mut oacts, None);
        let mut logits = Vec::new();
        self.matmul(&[&model.output], &self.out_plan, &oacts, &mut [&mut logits]);
        logits
    }

    /// Normalise and quantise each row of `x` into `acts`; the normalised float rows also land
    /// in `keep` when given (an adapter's input is the activation before quantisation).
    fn norm_quant(
        &self,
        x: &[f32],
        w: &[f32],
        eps: f32,
        acts: &mut [QRow],
        keep: Option<&mut [f32]>,
    ) {
        let d = w.len();
        let mut own;
        let buf = match keep {
            Some(k) => k,
            None => {
                own = vec![0.0f32; acts.len() * d];
                &mut own[..]
            }
        };
        self.per_row(buf, d, acts, &|i, out, a| {
            rmsnorm(&x[i * d..(i + 1) * d], w, eps, out);
            quantize_row(out, a);
        });
    }
}

/// One head of one row: softmax(q . K / sqrt(hd)) . V over the first `n` cached positions,
/// every sum sequential in position order (scores: each lane of a key tile sums over the head
/// dimension in index order, exactly as one position alone would).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
#[inline]
fn attend(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    n: usize,
    kh: usize,
    (hd, kvd): (usize, usize),
    scale: f32,
    out: &mut [f32],
    s: &mut Vec<f32>,
) {
    let tiles = n.div_ceil(KT);
    s.clear();
    s.resize(tiles * KT, 0.0);
    for (ti, st) in s.chunks_exact_mut(KT).enumerate() {
        let kt = &kc[ti * KT * kvd + kh * hd * KT..][..hd * KT];
        let mut acc = [0.0f32; KT];
        for (i, kr) in kt.chunks_exact(KT).enumerate() {
            let qi = q[i];
            for l in 0..KT {
                acc[l] += qi * kr[l];
            }
        }
        for l in 0..KT {
            st[l] = acc[l] * scale;
        }
    }
    let s = &mut s[..n];
    let mut mx = f32::NEG_INFINITY;
    for &sp in s.iter() {
        if sp > mx {
            mx = sp;
        }
    }
    let mut sum = 0.0f32;
    for sp in s.iter_mut() {
        *sp = math::exp_f32(*sp - mx);
        sum += *sp;
    }
    out.iter_mut().for_each(|o| *o = 0.0);
    for (p, &w) in s.iter().enumerate() {
        let vp = &vc[p * kvd + kh * hd..][..hd];
        for i in 0..hd {
            out[i] += w * vp[i];
        }
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// RMSNorm with a sequential sum of squares: `out = x * (1/sqrt(mean(x^2) + eps)) * w`.
fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    let scale = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * wi;
    }
}

fn apply_rope(x: &mut [f32], cs: &[(f32, f32)], neox: bool) {
    let half = cs.len();
    for (i, &(c, s)) in cs.iter().enumerate() {
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_splits_are_contiguous_and_cover_everything() {
        for (costs, w) in [
            (vec![1usize; 10], 3usize),
            ((1..=64).collect::<Vec<_>>(), 2),
            (vec![5], 4),
            (vec![], 2),
        ] {
            let r = split_by_cost(&costs, w);
            assert_eq!(r.len(), w);
            assert_eq!(r[0].start, 0);
            assert_eq!(r[w - 1].end, costs.len());
            for p in r.windows(2) {
                assert_eq!(p[0].end, p[1].start);
            }
        }
        // Balanced: a ramp of costs puts fewer (costlier) items in the second half.
        let r = split_by_cost(&(1..=64).collect::<Vec<_>>(), 2);
        assert!(r[0].len() > r[1].len());
    }
}
