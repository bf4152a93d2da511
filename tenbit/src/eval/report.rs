//! Turning task records into the report: per-suite accuracies, the fraction of the capability
//! gap that QA recovers, compression ratios, a Markdown table, a JSON file and two SVG plots
//! of the compression-compute frontier.
//!
//! Plots are SVG on purpose: text stays `<text>` elements, so no system fonts (and no font
//! crate) are needed to draw them, on any CI machine.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

use super::tasks::Suite;
use super::{qa_frame_bytes, TaskRecord};

/// Fraction of the small-to-strong gap that a configuration recovers:
/// `(acc - acc_small) / (acc_strong - acc_small)`. `None` when the strong model is not better
/// than the small one on this set (there is no gap to recover, and the ratio would be
/// meaningless or divide by zero). Values below 0 (QA hurt) and above 1 (QA beat the strong
/// model) are reported as they are.
pub fn gap_recovered(acc_small: f64, acc_strong: f64, acc: f64) -> Option<f64> {
    let gap = acc_strong - acc_small;
    (gap > 1e-12).then(|| (acc - acc_small) / gap)
}

/// The Wilson score interval (95%, z = 1.96) of a share `ok / n`: valid at small n and at
/// shares of 0 or 1, where the normal interval collapses. `None` for n = 0.
pub fn wilson(ok: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let z = 1.96f64;
    let (nf, p) = (n as f64, ok as f64 / n as f64);
    let d = 1.0 + z * z / nf;
    let c = (p + z * z / (2.0 * nf)) / d;
    let h = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / d;
    Some(((c - h).max(0.0), (c + h).min(1.0)))
}

/// Resamples of the paired bootstrap of [`gap_interval`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// 95% percentile-bootstrap interval of the gap recovered over paired per-task results
/// `(small, strong, mode)`: tasks are resampled with replacement ([`BOOTSTRAP_RESAMPLES`]
/// times, SplitMix64 seeded with a constant so a report is reproducible) and resamples without
/// a gap are skipped. `None` when fewer than half of the resamples have a gap.
pub fn gap_interval(tasks: &[(bool, bool, bool)]) -> Option<(f64, f64)> {
    if tasks.is_empty() {
        return None;
    }
    let mut rng = tenbit_wire::rng::SplitMix64::new(0x6761_705f_6369);
    let n = tasks.len();
    let mut gaps = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let (mut a, mut b, mut c) = (0usize, 0usize, 0usize);
        for _ in 0..n {
            let t = tasks[(rng.next_u64() % n as u64) as usize];
            a += t.0 as usize;
            b += t.1 as usize;
            c += t.2 as usize;
        }
        let f = |x: usize| x as f64 / n as f64;
        if let Some(g) = gap_recovered(f(a), f(b), f(c)) {
            gaps.push(g);
        }
    }
    if gaps.len() < BOOTSTRAP_RESAMPLES / 2 {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// Share of `true`s; 0 for an empty set.
pub fn accuracy(results: impl IntoIterator<Item = bool>) -> f64 {
    let (mut n, mut ok) = (0usize, 0usize);
    for r in results {
        n += 1;
        ok += r as usize;
    }
    if n == 0 {
        0.0
    } else {
        ok as f64 / n as f64
    }
}

/// `num / den` over totals, `None` when the denominator is zero.
fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut n, mut s) = (0usize, 0.0);
    for x in xs {
        n += 1;
        s += x;
    }
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// QA (or pick) at one K over one suite.
#[derive(Debug, Clone, Serialize)]
pub struct QaSummary {
    /// Questions asked (QA) or index bits (pick) per task.
    pub k: usize,
    /// Tasks counted: those where neither this run nor the small or strong answer failed by a
    /// strong-model outage.
    pub n: usize,
    /// Share of the `n` tasks answered correctly, 0 to 1 (non-outage failures count as wrong).
    pub accuracy: f64,
    /// Wilson 95% interval of `accuracy`.
    pub accuracy_ci95: Option<(f64, f64)>,
    /// Paired-bootstrap 95% interval of `gap_recovered` (see [`gap_interval`]).
    pub gap_ci95: Option<(f64, f64)>,
    /// The paper's recovery rate: share of the tasks the small model gets wrong that this
    /// configuration gets right.
    pub recovery_rate: Option<f64>,
    /// Tasks the small model gets wrong (the recovery rate's denominator).
    pub small_wrong: usize,
    /// Runs left out because the strong model had an outage.
    #[serde(default)]
    pub outages: usize,
    /// See [`gap_recovered`]; `None` when the strong model is not better than the small one.
    pub gap_recovered: Option<f64>,
    /// Mean frame bits per message over successful runs (K + frame overhead, padded to bytes).
    pub mean_bits_sent: f64,
    /// Bits of the frame format alone: K + 8 * [`qa_frame_bytes`] overhead.
    pub overhead_bits: u64,
    /// Total bits sent / total bits of the strong answers as raw UTF-8.
    pub ratio_vs_raw: Option<f64>,
    /// Total bits sent / total bits of the strong answers' lossless tenbit frames.
    pub ratio_vs_lossless: Option<f64>,
    /// Mean strong-model calls per task, as if no answer were cached.
    pub mean_strong_calls: f64,
    /// Mean strong-model tokens per task, as if no answer were cached.
    pub mean_strong_tokens: f64,
    /// Runs where the strong model failed (scored as wrong).
    pub failures: usize,
}

/// The rewrite configuration over one suite (tasks with a strong answer only).
#[derive(Debug, Clone, Serialize)]
pub struct RewriteSummary {
    /// Share of rewrites graded correct, 0 to 1.
    pub accuracy: f64,
    /// Share of tasks whose graded answer is unchanged by the rewrite.
    pub survives: f64,
    /// Mean bits of the rewrite's lossless frame, over successful rewrites.
    pub mean_bits_sent: f64,
    /// Rewrite frame bits / strong answer raw bits, over tasks with a rewrite.
    pub ratio_vs_raw: Option<f64>,
    /// Rewrite frame bits / strong answer lossless frame bits.
    pub ratio_vs_lossless: Option<f64>,
    /// Rewrite text bytes / strong answer bytes (how much shorter the text got).
    pub text_ratio: Option<f64>,
    /// Mean strong-model tokens a rewrite cost.
    pub mean_strong_tokens: f64,
    /// Rewrites the strong model failed to produce (scored as wrong).
    pub failures: usize,
}

/// Every configuration's totals over one suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteSummary {
    /// The suite summarised.
    pub suite: Suite,
    /// Tasks in it.
    pub tasks: usize,
    /// Small model alone: share correct, 0 to 1.
    pub acc_small: f64,
    /// Strong model alone: share correct, 0 to 1.
    pub acc_strong: f64,
    /// Mean size of the strong answers as raw UTF-8, in bits.
    pub mean_strong_raw_bits: f64,
    /// Mean size of the strong answers' lossless tenbit frames, in bits.
    pub mean_strong_lossless_bits: f64,
    /// Mean strong-model tokens of the strong answer alone.
    pub mean_strong_tokens: f64,
    /// One summary per evaluated K, in order.
    pub qa: Vec<QaSummary>,
    /// QA with the gold answer as reference (`--oracle`), per K.
    pub qa_oracle: Vec<QaSummary>,
    /// Pick as sent (the fallback frame when no candidate is good), per K.
    pub pick: Vec<QaSummary>,
    /// Pick with only the K index bits (candidate 0 when none is good), per K.
    pub pick_index_only: Vec<QaSummary>,
    /// Tasks left out of every figure because the strong answer failed by an outage.
    pub outage_tasks: usize,
    /// Wilson 95% interval of the small model's accuracy.
    pub acc_small_ci95: Option<(f64, f64)>,
    /// Wilson 95% interval of the strong model's accuracy.
    pub acc_strong_ci95: Option<(f64, f64)>,
    /// The rewrite summary, `None` when no task had a strong answer to rewrite.
    pub rewrite: Option<RewriteSummary>,
}

/// Summarise the runs `pick(task)` returns at K = `k` (one per task or none).
fn summarise_runs(
    recs: &[&TaskRecord],
    k: usize,
    acc_small: f64,
    acc_strong: f64,
    pick: &dyn Fn(&TaskRecord) -> Option<(&super::QaRecord, &super::Answer)>,
) -> QaSummary {
    let runs: Vec<(&TaskRecord, &super::QaRecord, &super::Answer)> = recs
        .iter()
        .filter_map(|r| pick(r).map(|(q, a)| (*r, q, a)))
        .collect();
    let outages = runs.iter().filter(|(_, _, a)| a.outage).count();
    let counted: Vec<_> = runs
        .iter()
        .filter(|(r, _, a)| !a.outage && !r.small.outage)
        .collect();
    let ok: Vec<_> = counted
        .iter()
        .filter(|(_, _, a)| a.error.is_none())
        .collect();
    let sent: u64 = ok.iter().map(|(_, q, _)| q.bits_sent).sum();
    let acc = accuracy(counted.iter().map(|(_, _, a)| a.graded.correct));
    let right = counted.iter().filter(|(_, _, a)| a.graded.correct).count();
    let paired: Vec<(bool, bool, bool)> = counted
        .iter()
        .map(|(r, _, a)| {
            (
                r.small.graded.correct,
                r.strong.graded.correct,
                a.graded.correct,
            )
        })
        .collect();
    let wrong: Vec<_> = paired.iter().filter(|p| !p.0).collect();
    // The gap over the counted tasks (they may be fewer than the suite's when runs failed).
    let acc_small_c = accuracy(paired.iter().map(|p| p.0));
    let acc_strong_c = accuracy(paired.iter().map(|p| p.1));
    let _ = (acc_small, acc_strong);
    QaSummary {
        k,
        n: counted.len(),
        accuracy: acc,
        accuracy_ci95: wilson(right, counted.len()),
        gap_recovered: gap_recovered(acc_small_c, acc_strong_c, acc),
        gap_ci95: gap_interval(&paired),
        recovery_rate: (!wrong.is_empty()).then(|| accuracy(wrong.iter().map(|p| p.2))),
        small_wrong: wrong.len(),
        outages,
        mean_bits_sent: mean(ok.iter().map(|(_, q, _)| q.bits_sent as f64)),
        overhead_bits: (8 * qa_frame_bytes(k) as u64).saturating_sub(k as u64),
        ratio_vs_raw: ratio(sent, ok.iter().map(|(r, _, _)| r.strong_raw_bits).sum()),
        ratio_vs_lossless: ratio(
            sent,
            ok.iter().map(|(r, _, _)| r.strong_lossless_bits).sum(),
        ),
        mean_strong_calls: mean(runs.iter().map(|(_, q, _)| q.strong_calls as f64)),
        mean_strong_tokens: mean(runs.iter().map(|(_, q, _)| q.strong_tokens as f64)),
        failures: counted.len() - ok.len() + outages,
    }
}

/// Summarise the records of one suite. Tasks whose strong answer failed by an outage are left
/// out (there is no gap to measure on them) and counted in `outage_tasks`.
pub fn summarise(suite: Suite, all: &[&TaskRecord], bits: &[usize]) -> SuiteSummary {
    let recs: Vec<&TaskRecord> = all.iter().copied().filter(|r| !r.strong.outage).collect();
    let recs = &recs[..];
    let acc_small = accuracy(recs.iter().map(|r| r.small.graded.correct));
    let acc_strong = accuracy(recs.iter().map(|r| r.strong.graded.correct));
    let raw: u64 = recs.iter().map(|r| r.strong_raw_bits).sum();
    let lossless: u64 = recs.iter().map(|r| r.strong_lossless_bits).sum();
    let per_k = |list: &dyn Fn(&TaskRecord) -> &Vec<super::QaRecord>, index_only: bool| {
        let mut ks: Vec<usize> = recs
            .iter()
            .flat_map(|r| list(r).iter().map(|q| q.k))
            .collect();
        ks.sort_unstable();
        ks.dedup();
        ks.into_iter()
            .map(|k| {
                summarise_runs(recs, k, acc_small, acc_strong, &|r: &TaskRecord| {
                    list(r).iter().find(|q| q.k == k).map(|q| {
                        let a = if index_only {
                            q.index_only.as_ref().unwrap_or(&q.answer)
                        } else {
                            &q.answer
                        };
                        (q, a)
                    })
                })
            })
            .collect::<Vec<_>>()
    };
    let _ = bits;
    let qa = per_k(&|r| &r.qa, false);
    let qa_oracle = per_k(&|r| &r.qa_oracle, false);
    let pick = per_k(&|r| &r.pick, false);
    let pick_index_only = per_k(&|r| &r.pick, true);
    let rw: Vec<(&TaskRecord, &super::RewriteRecord)> = recs
        .iter()
        .filter_map(|r| r.rewrite.as_ref().map(|w| (*r, w)))
        .collect();
    let rewrite = (!rw.is_empty()).then(|| {
        let ok: Vec<_> = rw
            .iter()
            .filter(|(_, w)| w.answer.error.is_none())
            .collect();
        let sent: u64 = ok.iter().map(|(_, w)| w.bits_sent).sum();
        RewriteSummary {
            accuracy: accuracy(rw.iter().map(|(_, w)| w.answer.graded.correct)),
            survives: accuracy(rw.iter().map(|(_, w)| w.survives)),
            mean_bits_sent: mean(ok.iter().map(|(_, w)| w.bits_sent as f64)),
            ratio_vs_raw: ratio(sent, ok.iter().map(|(r, _)| r.strong_raw_bits).sum()),
            ratio_vs_lossless: ratio(sent, ok.iter().map(|(r, _)| r.strong_lossless_bits).sum()),
            text_ratio: ratio(
                ok.iter().map(|(_, w)| w.raw_bits).sum(),
                ok.iter().map(|(r, _)| r.strong_raw_bits).sum(),
            ),
            mean_strong_tokens: mean(rw.iter().map(|(_, w)| w.strong_tokens as f64)),
            failures: rw.len() - ok.len(),
        }
    });
    SuiteSummary {
        suite,
        tasks: recs.len(),
        acc_small,
        acc_strong,
        mean_strong_raw_bits: raw as f64 / recs.len().max(1) as f64,
        mean_strong_lossless_bits: lossless as f64 / recs.len().max(1) as f64,
        mean_strong_tokens: mean(recs.iter().map(|r| r.strong_tokens as f64)),
        qa,
        qa_oracle,
        pick,
        pick_index_only,
        rewrite,
        outage_tasks: all.len() - recs.len(),
        acc_small_ci95: wilson(
            recs.iter().filter(|r| r.small.graded.correct).count(),
            recs.len(),
        ),
        acc_strong_ci95: wilson(
            recs.iter().filter(|r| r.strong.graded.correct).count(),
            recs.len(),
        ),
    }
}

/// The whole report, as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Version of the tenbit build that ran the evaluation (results depend on it).
    pub tenbit_version: &'static str,
    /// Label of the small model (file name).
    pub small_model: String,
    /// Label of the strong model (file name, or model and server URL).
    pub strong_model: String,
    /// The K values evaluated.
    pub bits: Vec<usize>,
    /// QA frame bytes besides the packed bits (see [`super::QA_FRAME_OVERHEAD_BYTES`]).
    pub qa_frame_overhead_bytes: usize,
    /// One summary per suite that had tasks.
    pub suites: Vec<SuiteSummary>,
    /// Every task's record, for re-analysis.
    pub tasks: Vec<TaskRecord>,
}

impl Report {
    /// Summarise `tasks` per suite (suites with no task are left out).
    pub fn new(small: String, strong: String, bits: Vec<usize>, tasks: Vec<TaskRecord>) -> Self {
        let mut suites = Vec::new();
        for s in [
            Suite::Gsm8k,
            Suite::Math500,
            Suite::Hard,
            Suite::MmluStem,
            Suite::Humaneval,
            Suite::Math,
        ] {
            let recs: Vec<&TaskRecord> = tasks.iter().filter(|t| t.suite == s).collect();
            if !recs.is_empty() {
                suites.push(summarise(s, &recs, &bits));
            }
        }
        Report {
            tenbit_version: env!("CARGO_PKG_VERSION"),
            small_model: small,
            strong_model: strong,
            bits,
            qa_frame_overhead_bytes: super::QA_FRAME_OVERHEAD_BYTES,
            suites,
            tasks,
        }
    }
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}
fn ci(x: Option<(f64, f64)>) -> String {
    x.map_or("[n/a]".into(), |(a, b)| format!("[{a:.2}, {b:.2}]"))
}
fn opt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// The Markdown tables, one per suite.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# tenbit eval\n\nsmall model: `{}`; strong model: `{}`; QA frame = {} bytes + ceil(K/8).\n\n\
         \"bits sent\" is the frame on the link; \"/ raw\" divides by the strong answer's raw \
         UTF-8 bits, \"/ lossless\" by its lossless tenbit frame (prompt known). Gap recovered = \
         (acc - acc_small) / (acc_strong - acc_small); n/a when the strong model is not better.\n",
        r.small_model, r.strong_model, super::QA_FRAME_OVERHEAD_BYTES
    );
    for su in &r.suites {
        s.push_str(&format!(
            "\n## {} ({} tasks)\n\n| configuration | accuracy | gap recovered | bits sent (mean) | / raw | / lossless | strong tokens (mean) | failures |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
            su.suite.name(),
            su.tasks
        ));
        s.push_str(&format!(
            "| small alone | {} | 0 | 0 | 0 | 0 | 0 | 0 |\n",
            f3(su.acc_small)
        ));
        s.push_str(&format!(
            "| strong alone, raw text | {} | 1 | {:.0} | 1 | {} | {:.0} | 0 |\n",
            f3(su.acc_strong),
            su.mean_strong_raw_bits,
            opt((su.mean_strong_lossless_bits > 0.0)
                .then(|| su.mean_strong_raw_bits / su.mean_strong_lossless_bits)),
            su.mean_strong_tokens
        ));
        s.push_str(&format!(
            "| strong alone, lossless tenbit | {} | 1 | {:.0} | {} | 1 | {:.0} | 0 |\n",
            f3(su.acc_strong),
            su.mean_strong_lossless_bits,
            opt((su.mean_strong_raw_bits > 0.0)
                .then(|| su.mean_strong_lossless_bits / su.mean_strong_raw_bits)),
            su.mean_strong_tokens
        ));
        let rows: [(&str, &Vec<QaSummary>); 4] = [
            ("small + QA (protocol 3, deployed)", &su.qa),
            (
                "small + QA (--oracle: judge sees the gold answer)",
                &su.qa_oracle,
            ),
            ("pick, index only", &su.pick_index_only),
            ("pick, fallback to the strong answer's frame", &su.pick),
        ];
        for (label, list) in rows {
            for q in list {
                s.push_str(&format!(
                    "| {label}, K={} | {} | {} | {:.1} | {} | {} | {:.0} | {} |\n",
                    q.k,
                    f3(q.accuracy),
                    opt(q.gap_recovered),
                    q.mean_bits_sent,
                    opt(q.ratio_vs_raw),
                    opt(q.ratio_vs_lossless),
                    q.mean_strong_tokens,
                    q.failures
                ));
            }
        }
        s.push_str(&format!(
            "\nIntervals (95%): small {}, strong {}; tasks left out for a strong-model outage: {}.\n\n\
             | configuration | n | accuracy [Wilson 95%] | gap recovered [bootstrap 95%] | recovery rate on small-wrong (n) |\n|---|---:|---:|---:|---:|\n",
            ci(su.acc_small_ci95),
            ci(su.acc_strong_ci95),
            su.outage_tasks
        ));
        for (label, list) in rows {
            for q in list {
                s.push_str(&format!(
                    "| {label}, K={} | {} | {} {} | {} {} | {} ({}) |\n",
                    q.k,
                    q.n,
                    f3(q.accuracy),
                    ci(q.accuracy_ci95),
                    opt(q.gap_recovered),
                    ci(q.gap_ci95),
                    opt(q.recovery_rate),
                    q.small_wrong
                ));
            }
        }
        if let Some(w) = &su.rewrite {
            s.push_str(&format!(
                "| strong rewrite, lossless tenbit | {} | {} | {:.0} | {} | {} | {:.0} | {} |\n",
                f3(w.accuracy),
                opt(gap_recovered(su.acc_small, su.acc_strong, w.accuracy)),
                w.mean_bits_sent,
                opt(w.ratio_vs_raw),
                opt(w.ratio_vs_lossless),
                su.mean_strong_tokens + w.mean_strong_tokens,
                w.failures
            ));
            s.push_str(&format!(
                "\nRewrite: the graded answer survives in {:.0}% of tasks; the rewritten text is {} of the original's size.\n",
                100.0 * w.survives,
                opt(w.text_ratio)
            ));
        }
    }
    s
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A report file could not be written (directory missing, disk full, no permission).
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {detail}")]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// The plotting library's error text.
        detail: String,
    },
}

/// Write `report.json`, `report.md` and the two plots into `dir`; returns the files written.
pub fn write_all(r: &Report, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ReportError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = dir.join("report.json");
    let body = serde_json::to_string_pretty(r).expect("the report serialises");
    std::fs::write(&json, body + "\n").map_err(io(&json))?;
    let md = dir.join("report.md");
    std::fs::write(&md, markdown(r)).map_err(io(&md))?;
    let a = dir.join("accuracy_vs_bits.svg");
    plot_accuracy(r, &a).map_err(|detail| ReportError::Plot {
        path: a.clone(),
        detail,
    })?;
    let b = dir.join("ratio_vs_compute.svg");
    plot_ratio(r, &b).map_err(|detail| ReportError::Plot {
        path: b.clone(),
        detail,
    })?;
    Ok(vec![json, md, a, b])
}

const COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];

fn bounds(xs: &[f64]) -> (f64, f64) {
    let lo = xs
        .iter()
        .copied()
        .filter(|x| *x > 0.0)
        .fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(0.0f64, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        return (1.0, 10.0);
    }
    (lo / 2.0, hi * 2.0)
}

/// The end of every plot: the legend in the lower right, then the file written.
fn legend_and_save<'a, 'p: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'p>, CT>,
    root: &DrawingArea<SVGBackend<'p>, plotters::coord::Shift>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|x| x.to_string())?;
    root.present().map_err(|x| x.to_string())
}

/// The frame both plots share: a white canvas, the title naming the model pair, the same
/// margins; `y_area` is the room the y labels need.
fn titled<'a, 'p>(
    root: &'a DrawingArea<SVGBackend<'p>, plotters::coord::Shift>,
    what: &str,
    r: &Report,
    y_area: u32,
) -> Result<ChartBuilder<'a, 'static, SVGBackend<'p>>, String> {
    root.fill(&WHITE).map_err(|x| x.to_string())?;
    let mut b = ChartBuilder::on(root);
    b.caption(
        format!("{what} ({} / {})", r.small_model, r.strong_model),
        ("sans-serif", 20),
    )
    .margin(15)
    .x_label_area_size(45)
    .y_label_area_size(y_area);
    Ok(b)
}

/// Accuracy against bits sent (log axis): small alone at the empty QA frame (K = 0), the QA
/// points along a line, the rewrite, the strong answer's lossless frame and its raw text.
fn plot_accuracy(r: &Report, path: &Path) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let mut xs = vec![8.0 * qa_frame_bytes(0) as f64];
    for su in &r.suites {
        xs.push(su.mean_strong_raw_bits);
        xs.push(su.mean_strong_lossless_bits);
        xs.extend(su.qa.iter().map(|q| q.mean_bits_sent));
        xs.extend(su.rewrite.iter().map(|w| w.mean_bits_sent));
    }
    let (lo, hi) = bounds(&xs);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let mut chart = titled(&root, "Accuracy vs bits sent", r, 55)?
        .build_cartesian_2d((lo..hi).log_scale(), 0.0f64..1.05f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("bits sent per message (log scale)")
        .y_desc("accuracy")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, su) in r.suites.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut line = vec![(8.0 * qa_frame_bytes(0) as f64, su.acc_small)];
        // Configurations where every run failed sent nothing and have no place on a log axis.
        line.extend(
            su.qa
                .iter()
                .filter(|q| q.mean_bits_sent > 0.0)
                .map(|q| (q.mean_bits_sent, q.accuracy)),
        );
        let name = su.suite.name();
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{name}: small (K=0) and small+QA"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        let mut labels: Vec<(f64, f64, String)> = vec![(line[0].0, line[0].1, "small".into())];
        labels.extend(
            su.qa
                .iter()
                .map(|q| (q.mean_bits_sent, q.accuracy, format!("K={}", q.k))),
        );
        labels.push((
            su.mean_strong_lossless_bits,
            su.acc_strong,
            "strong lossless".into(),
        ));
        labels.push((su.mean_strong_raw_bits, su.acc_strong, "strong raw".into()));
        if let Some(w) = &su.rewrite {
            labels.push((w.mean_bits_sent, w.accuracy, "rewrite".into()));
        }
        chart
            .draw_series(labels.into_iter().filter(|l| l.0 > 0.0).map(|(x, y, t)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(t, (6, -14), ("sans-serif", 12))
            }))
            .map_err(|x| e(&x))?;
    }
    legend_and_save(&mut chart, &root)
}

/// Compression ratio (bits sent / strong answer raw bits, log) against strong-model compute
/// (tokens the strong model processes per message, log).
fn plot_ratio(r: &Report, path: &Path) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let mut pts: Vec<(usize, f64, f64, String)> = Vec::new();
    for (i, su) in r.suites.iter().enumerate() {
        let raw = su.mean_strong_raw_bits.max(1.0);
        for q in &su.qa {
            if let Some(rt) = q.ratio_vs_raw {
                pts.push((i, q.mean_strong_tokens.max(1.0), rt, format!("K={}", q.k)));
            }
        }
        if let Some(w) = &su.rewrite {
            if let Some(rt) = w.ratio_vs_raw {
                pts.push((
                    i,
                    (su.mean_strong_tokens + w.mean_strong_tokens).max(1.0),
                    rt,
                    "rewrite".into(),
                ));
            }
        }
        pts.push((
            i,
            su.mean_strong_tokens.max(1.0),
            su.mean_strong_lossless_bits / raw,
            "strong lossless".into(),
        ));
    }
    let (xlo, xhi) = bounds(&pts.iter().map(|p| p.1).collect::<Vec<_>>());
    let (ylo, yhi) = bounds(&pts.iter().map(|p| p.2).collect::<Vec<_>>());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let mut chart = titled(&root, "Compression ratio vs strong-model compute", r, 65)?
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi.max(1.5)).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("strong-model tokens per message (prompt + generated, log)")
        .y_desc("bits sent / raw strong answer bits (log)")
        .draw()
        .map_err(|x| e(&x))?;
    for (i, su) in r.suites.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let line: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.0 == i && p.3.starts_with("K="))
            .map(|p| (p.1, p.2))
            .collect();
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{}: small+QA", su.suite.name()))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().filter(|p| p.0 == i).map(|(_, x, y, t)| {
                EmptyElement::at((*x, *y))
                    + Circle::new((0, 0), 4, c.filled())
                    + Text::new(t.clone(), (6, -14), ("sans-serif", 12))
            }))
            .map_err(|x| e(&x))?;
    }
    legend_and_save(&mut chart, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_arithmetic() {
        let near = |got: Option<f64>, want: f64| {
            let g = got.expect("a gap exists");
            assert!((g - want).abs() < 1e-12, "{g} != {want}");
        };
        near(gap_recovered(0.2, 0.6, 0.4), 0.5);
        near(gap_recovered(0.2, 0.6, 0.2), 0.0);
        near(gap_recovered(0.2, 0.6, 0.6), 1.0);
        near(gap_recovered(0.2, 0.6, 0.1), -0.25);
        near(gap_recovered(0.2, 0.6, 0.7), 1.25);
        near(gap_recovered(0.25, 0.75, 0.375), 0.25);
        assert_eq!(gap_recovered(0.5, 0.5, 0.7), None, "no gap");
        assert_eq!(
            gap_recovered(0.6, 0.2, 0.4),
            None,
            "strong worse than small"
        );
        assert_eq!(accuracy([true, false, true, true]), 0.75);
        assert_eq!(accuracy(Vec::<bool>::new()), 0.0);
        assert_eq!(ratio(9 * 8, 1000), Some(0.072));
        assert_eq!(ratio(1, 0), None);
    }

    #[test]
    fn intervals() {
        // Wilson: 0 of 10 still has an upper bound; 5 of 10 is symmetric about 0.5.
        let (lo, hi) = wilson(0, 10).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 1e-3, "{hi}");
        let (lo, hi) = wilson(5, 10).unwrap();
        assert!(
            (lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), None);
        // Bootstrap: a mode that always equals the strong model recovers exactly 1; one equal to
        // the small model exactly 0; a half-way mode's interval contains 0.5.
        let t: Vec<(bool, bool, bool)> = (0..40)
            .map(|i| (i % 4 == 0, i % 2 == 0, i % 2 == 0))
            .collect();
        assert_eq!(gap_interval(&t), Some((1.0, 1.0)));
        let t0: Vec<_> = t.iter().map(|&(a, b, _)| (a, b, a)).collect();
        assert_eq!(gap_interval(&t0), Some((0.0, 0.0)));
        let half: Vec<_> = (0..40)
            .map(|i| (i % 4 == 0, i % 2 == 0, i % 4 == 0 || i % 8 == 2))
            .collect();
        let (lo, hi) = gap_interval(&half).unwrap();
        assert!(lo < 0.5 && 0.5 < hi, "{lo} {hi}");
        assert_eq!(gap_interval(&[]), None);
        assert_eq!(gap_interval(&[(true, true, true)]), None, "no gap");
    }
}
