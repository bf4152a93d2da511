//! A persistent worker pool with a spin-then-park hand-off and task claiming.
//!
//! A decode step of a small model is ~150 short parallel sections (four or five per layer).
//! With a general-purpose pool each section injects a job and wakes sleeping threads, which on
//! a 135M model costs about as much as the split saves. Here the workers of a session live as
//! long as the session and, between sections, *spin* on an epoch counter for a while before
//! they park: inside a forward pass a hand-off is one atomic store seen by spinning workers
//! (well under a microsecond), and a worker is woken from sleep at most once per forward pass.
//!
//! A section is a list of tasks, cut once per matrix shape by the caller (a few per worker);
//! workers and the caller *claim* them with one atomic increment each. A worker that the OS
//! has descheduled (a busy machine) then delays only the task it holds, not a fixed share.
//! Results never depend on who runs a task: each task computes whole output rows (or whole
//! attention heads), with the same float sequence on any thread.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spins of a waiting worker before it parks (~15 us with x86 `pause`): long enough to bridge
/// the serial gaps inside a forward pass (norms, rope, quantisation), short enough that a
/// worker parks between tokens. Measured on a busy 2-core machine, long spins (4 ms) made
/// 2-thread decode 2-3x slower than parking early: a spinning worker takes the core from the
/// thread with work, and a descheduled one holds its task.
const SPINS_BEFORE_PARK: u32 = 1 << 8;
/// Spins between `yield_now` calls while spinning: keeps oversubscribed runs (more workers
/// than cores, as in the thread-count tests, or a busy machine) from starving the thread that
/// holds a task.
const SPINS_PER_YIELD: u32 = 1 << 6;

/// The job of the current section, lifetime-erased (see [`Pool::run`] for why that is sound).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per section; workers join a section when they see a new value.
    epoch: AtomicU64,
    /// The epoch whose job may be read now, 0 once its caller stops admitting workers.
    open: AtomicU64,
    /// Written by the caller before the section opens, read by admitted workers.
    job: UnsafeCell<Option<Job>>,
    tasks: AtomicUsize,
    /// Next unclaimed task of the open section.
    next: AtomicUsize,
    /// Tasks finished in the open section.
    done: AtomicUsize,
    /// Workers admitted to a section (between their check of `open` and leaving it).
    active: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    quit: AtomicBool,
    /// Set when a task panicked on a worker; the caller re-raises it.
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the caller of `run` while no worker is admitted (`open` is
// 0 and `active` was seen 0), and read only by workers admitted to the open epoch (`active`
// incremented, then `open` re-checked, both SeqCst: the caller cannot close the section and
// return without seeing them). Every other field is an atomic or a std sync primitive.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// A fixed set of `n` workers: the calling thread and `n - 1` threads spawned once.
pub(crate) struct Pool {
    n: usize,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Start `n - 1` worker threads (`n >= 1`; `n == 1` spawns nothing).
    pub(crate) fn new(n: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            open: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
        });
        let mut pool = Pool {
            n: n.max(1),
            shared,
            threads: Vec::new(),
        };
        for id in 1..pool.n {
            let sh = Arc::clone(&pool.shared);
            let h = std::thread::Builder::new()
                .name(format!("tenbit-engine-{id}"))
                .spawn(move || worker(&sh))?;
            pool.threads.push(h);
        }
        Ok(pool)
    }

    /// Number of workers, the caller included.
    pub(crate) fn workers(&self) -> usize {
        self.n
    }

    /// Run `job(t)` once for every task `t` in `0..tasks`, on whichever workers claim them
    /// (the caller among them), and return when all are done. A panic in a task is re-raised.
    pub(crate) fn run(&self, tasks: usize, job: &(dyn Fn(usize) + Sync)) {
        if self.n == 1 || tasks <= 1 {
            (0..tasks).for_each(job);
            return;
        }
        let sh = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function neither returns nor
        // unwinds before the section is closed and no admitted worker remains (below).
        let ptr: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job) };
        // SAFETY: no worker is admitted (the previous section ended with `active` == 0 after
        // closing), so nobody reads `job` now.
        unsafe { *sh.job.get() = Some(ptr) };
        sh.tasks.store(tasks, Ordering::Relaxed);
        sh.next.store(0, Ordering::Relaxed);
        sh.done.store(0, Ordering::Relaxed);
        let e = sh.epoch.load(Ordering::Relaxed) + 1;
        sh.open.store(e, Ordering::SeqCst);
        sh.epoch.store(e, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(sh, job)));
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < tasks {
            spin(&mut spins);
        }
        sh.open.store(0, Ordering::SeqCst);
        while sh.active.load(Ordering::SeqCst) != 0 {
            spin(&mut spins);
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if sh.panicked.swap(false, Ordering::Relaxed) {
            panic!("an engine worker thread panicked");
        }
    }
}

#[inline]
fn spin(spins: &mut u32) {
    std::hint::spin_loop();
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(SPINS_PER_YIELD) {
        std::thread::yield_now();
    }
}

/// Claim and run tasks of the open section until none is left. A panicking task still
/// counts as done (the panic is reported), so the section always ends.
fn claim(sh: &Shared, job: &(dyn Fn(usize) + Sync)) {
    let tasks = sh.tasks.load(Ordering::Relaxed);
    let mut first_panic = None;
    loop {
        let t = sh.next.fetch_add(1, Ordering::Relaxed);
        if t >= tasks {
            break;
        }
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(t))) {
            first_panic.get_or_insert(p);
        }
        sh.done.fetch_add(1, Ordering::Release);
    }
    if let Some(p) = first_panic {
        std::panic::resume_unwind(p);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.quit.store(true, Ordering::SeqCst);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(sh: &Shared) {
    let mut seen = 0u64;
    loop {
        // Wait for a new epoch: spin, then park.
        let mut spins = 0u32;
        let mut e = sh.epoch.load(Ordering::Acquire);
        while e == seen {
            if spins < SPINS_BEFORE_PARK {
                spin(&mut spins);
            } else {
                let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
                // Announce the nap before re-checking the epoch (SeqCst on both sides): either
                // the caller sees us and notifies under the lock, or we see its new epoch.
                sh.sleepers.fetch_add(1, Ordering::SeqCst);
                while sh.epoch.load(Ordering::SeqCst) == seen {
                    g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                sh.sleepers.fetch_sub(1, Ordering::SeqCst);
                drop(g);
            }
            e = sh.epoch.load(Ordering::Acquire);
        }
        seen = e;
        if sh.quit.load(Ordering::Acquire) {
            return;
        }
        sh.active.fetch_add(1, Ordering::SeqCst);
        if sh.open.load(Ordering::SeqCst) == e {
            // SAFETY: admitted to the open epoch: the caller published `job` before opening it
            // and keeps it alive until it has closed the section and seen `active` at 0.
            let job = unsafe { &*(*sh.job.get()).expect("job set before the section opens") };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(sh, job))).is_err() {
                sh.panicked.store(true, Ordering::Relaxed);
            }
        }
        sh.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Split `0..n` items into `parts` contiguous ranges as equal as possible, each boundary a
/// multiple of `align` (except the end): the static share of each worker.
pub(crate) fn split(n: usize, parts: usize, align: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    let units = n.div_ceil(align.max(1));
    (0..parts)
        .map(|p| {
            let a = (units * p / parts * align).min(n);
            let b = (units * (p + 1) / parts * align).min(n);
            a..b
        })
        .collect()
}

/// A raw view of a mutable slice whose disjoint parts workers of one section write.
pub(crate) struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}

// SAFETY: a `SharedMut` is only used inside one `Pool::run` section whose workers touch
// disjoint index ranges (each user states its partition), while the slice it came from stays
// mutably borrowed for the whole section; `T: Send` lets the elements be written elsewhere.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub(crate) fn new(s: &mut [T]) -> SharedMut<T> {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// The sub-slice `range` (bounds are checked).
    ///
    /// # Safety
    ///
    /// No other live reference (from any thread) may overlap `range` while the returned slice
    /// is used, and the slice this view came from must outlive it.
    #[allow(clippy::mut_from_ref)] // disjointness is the caller's contract, stated above
    pub(crate) unsafe fn slice(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_per_section_and_the_pool_survives_naps() {
        for n in 1..=4 {
            let pool = Pool::new(n).unwrap();
            assert_eq!(pool.workers(), n);
            for round in 0..200 {
                let tasks = 1 + round % 9;
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n={n}");
                if round == 100 {
                    // Let the workers park, then wake them with the next section.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }

    #[test]
    fn a_panicking_share_is_reraised_and_the_pool_keeps_working() {
        let pool = Pool::new(3).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(6, &|t| assert!(t != 2, "task 2 fails"))
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        pool.run(4, &|t| {
            sum.fetch_add(t, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn split_covers_everything_once_on_aligned_boundaries() {
        for (n, parts, align) in [
            (576, 2, 8),
            (100, 3, 8),
            (7, 4, 8),
            (0, 2, 8),
            (49152, 3, 8),
        ] {
            let r = split(n, parts, align);
            assert_eq!(r.len(), parts);
            assert_eq!(r[0].start, 0);
            assert_eq!(r[parts - 1].end, n);
            for w in r.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].end % align == 0 || w[0].end == n);
            }
        }
    }
}
