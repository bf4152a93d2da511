//! Driver of the time-budgeted fuzz harnesses in `link_fuzz.rs`: a seeded RNG, structure-aware
//! mutators, a per-thread counting allocator, and a loop that runs cases until the budget is
//! spent.
//!
//! Each case gets its own seed derived from (run seed, harness name, case number), and every case
//! starts from fresh state, so a failure is reproduced by its case number alone: the panic report
//! prints `TENBIT_FUZZ_SEED=.. TENBIT_FUZZ_ONLY=..`, which re-runs exactly that case.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Counts heap traffic per thread, so that harnesses running in parallel test threads see only
/// their own allocations.
pub struct CountingAlloc;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn note(delta: i64, call: bool) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
    if call {
        let _ = CALLS.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are thread-local cells
// initialised by `const`, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            note(l.size() as i64, true);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            note(l.size() as i64, true);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        note(-(l.size() as i64), false);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            note(new as i64 - l.size() as i64, true);
        }
        q
    }
}

/// Heap use of the code run inside [`metered`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heap {
    /// Allocation (and reallocation) calls.
    pub calls: u64,
    /// Most bytes live at once above the level at entry.
    pub peak: i64,
    /// Bytes still live at exit that were not at entry (a leak, or retained growth).
    pub net: i64,
}

/// Runs `f` and reports its heap use on this thread.
pub fn metered<T>(f: impl FnOnce() -> T) -> (T, Heap) {
    let base = LIVE.with(Cell::get);
    let calls0 = CALLS.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let heap = Heap {
        calls: CALLS.with(Cell::get) - calls0,
        peak: PEAK.with(Cell::get) - base,
        net: LIVE.with(Cell::get) - base,
    };
    (out, heap)
}

/// splitmix64 step: seeds and case seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Small seeded generator (xorshift64*), with the helpers the harnesses need.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed) | 1)
    }
    pub fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn u8(&mut self) -> u8 {
        (self.u64() >> 56) as u8
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.u64() % n as u64) as usize
        }
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    /// `len` random bytes; sometimes from a small alphabet, so zeros and repeats are common.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        match self.below(4) {
            0 => (0..len).map(|_| [0u8, 1, 0xFF][self.below(3)]).collect(),
            1 => (0..len)
                .map(|_| b"the quick brown fox "[self.below(20)])
                .collect(),
            _ => (0..len).map(|_| self.u8()).collect(),
        }
    }
    /// Random bytes of a length from [`Rng::len`].
    pub fn blob(&mut self, max: usize) -> Vec<u8> {
        let n = self.len(max);
        self.bytes(n)
    }
    /// Random bytes of a length in `lo..=hi`.
    pub fn blob_in(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.range(lo, hi);
        self.bytes(n)
    }
    /// A length biased towards small values and edges.
    pub fn len(&mut self, max: usize) -> usize {
        match self.below(8) {
            0 => 0,
            1 => max,
            2 => self.below(8).min(max),
            _ => self.below(max + 1),
        }
    }
}

/// Byte values that tend to sit on parser edges.
const INTERESTING: [u8; 10] = [0, 1, 2, 0x7F, 0x80, 0x81, 0xFE, 0xFF, 0x40, 0x10];

/// Applies 1-4 random edits: bit flips, interesting or random bytes, truncation, insertion,
/// deletion, duplication of a range, swaps. Returns whether the bytes changed.
pub fn mutate(rng: &mut Rng, v: &mut Vec<u8>) -> bool {
    let before = v.clone();
    for _ in 0..rng.range(1, 4) {
        let n = v.len();
        match rng.below(9) {
            0 | 1 if n > 0 => {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
            2 if n > 0 => {
                let i = rng.below(n);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 if n > 0 => {
                let i = rng.below(n);
                v[i] = rng.u8();
            }
            4 => v.truncate(rng.below(n + 1)),
            5 => {
                let at = rng.below(n + 1);
                let extra = rng.blob_in(1, 16);
                v.splice(at..at, extra);
            }
            6 if n > 0 => {
                let a = rng.below(n);
                let b = (a + rng.range(1, 16)).min(n);
                v.drain(a..b);
            }
            7 if n > 0 => {
                let a = rng.below(n);
                let b = (a + rng.range(1, 32)).min(n);
                let dup = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, dup);
            }
            8 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                v.swap(a, b);
            }
            _ => v.push(rng.u8()),
        }
    }
    *v != before
}

fn env_u64(name: &str) -> Option<u64> {
    let s = std::env::var(name).ok()?;
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// What one harness did.
#[derive(Debug)]
pub struct Report {
    pub cases: u64,
    pub elapsed: Duration,
}

/// Runs `case` with fresh per-case RNGs until `TENBIT_FUZZ_SECS` (default 2) have passed and
/// at least `min_cases` ran. `TENBIT_FUZZ_SEED` picks the run seed (default fixed, so CI runs are
/// reproducible); `TENBIT_FUZZ_ONLY=N` runs just case `N`. The time budget only decides how many
/// cases run; nothing about time is asserted.
pub fn run(name: &str, min_cases: u64, mut case: impl FnMut(&mut Rng)) -> Report {
    let secs = std::env::var("TENBIT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(2.0);
    let seed = env_u64("TENBIT_FUZZ_SEED").unwrap_or(0x7E4B_17F0_5EED);
    let name_hash = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let base = mix(seed ^ name_hash);
    let budget = Duration::from_secs_f64(secs.max(0.0));
    let run_case = |i: u64, case: &mut dyn FnMut(&mut Rng)| {
        let mut rng = Rng::new(base ^ mix(i));
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            eprintln!(
                "fuzz {name}: case {i} failed; reproduce with TENBIT_FUZZ_SEED={seed:#x} \
                 TENBIT_FUZZ_ONLY={i}"
            );
            panic::resume_unwind(p);
        }
    };
    let start = Instant::now();
    let mut cases = 0u64;
    if let Some(i) = env_u64("TENBIT_FUZZ_ONLY") {
        run_case(i, &mut case);
        cases = 1;
    } else {
        while cases < min_cases || start.elapsed() < budget {
            run_case(cases, &mut case);
            cases += 1;
        }
    }
    let r = Report {
        cases,
        elapsed: start.elapsed(),
    };
    eprintln!(
        "fuzz {name}: {} cases in {:.1} s (seed {seed:#x})",
        r.cases,
        r.elapsed.as_secs_f64()
    );
    r
}
