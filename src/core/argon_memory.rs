//! The working memory of Argon2id evaluations (19 MiB each with OWASP parameters): how it is
//! mapped, set up ahead and wiped. Must never hand out memory that is not zeroed or not aligned
//! for [`Block`], and never let memory that Argon2 wrote be released, or its owner finish,
//! before it is wiped.
//!
//! Two costs of that memory are not Argon2's own work, and in a short-lived `sparekey login`
//! process each is a large share of the budget beyond the hash (BENCHMARKS.md, row 7):
//!
//! - **Page faults.** In 4 KiB pages a fresh 19 MiB buffer takes about 5,000 of them. On Linux
//!   the memory is an anonymous mapping (already zero, so nothing needs to write it before
//!   Argon2 does), aligned to 2 MiB and marked `MADV_HUGEPAGE` before any page is touched, so
//!   it faults about ten times; an allocator's `alloc_zeroed` cannot do this, as it writes the
//!   zeroes itself before the advice can be given. Even so the faults cost 2–3 ms on the
//!   2-core machine of the benchmarks.
//! - **The wipe.** The bytes Argon2 wrote were derived from a password or a code, so they are
//!   zeroed before release, as the reference implementation does: about 2 ms more.
//!
//! [`HashMemory::ahead`] takes most of both off the critical path of a process that knows it
//! is about to hash. A helper thread waits until the first memory is taken, then faults all of
//! it in ahead of Argon2's first pass (`MADV_POPULATE_WRITE`, which backs pages without reading or
//! writing their bytes, so Argon2 may be writing the same memory meanwhile; the helper, at
//! about 7 MiB/ms, soon runs ahead of Argon2's 1.6). It waits rather than starting at once
//! because a thread faulting pages in from its first moment made its own start and the
//! store's open that followed about a millisecond slower. It then drops to idle priority, so
//! that being handed a wipe never preempts the committing thread, and wipes what is given
//! back while the process commits; the owner finishes whatever is left, without waiting.
//!
//! [`HashMemory::ON_DEMAND`] (long-lived processes, everything that does not know ahead) gives
//! fresh memory to each evaluation and wipes it inline.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use argon2::Block;

const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Bytes per claim when two threads share a wipe: large enough that claiming costs nothing,
/// small enough that the helper rarely zeroes a chunk the owner has already zeroed.
const WIPE_CHUNK: usize = 256 * 1024;

/// Zeroed, [`Block`]-aligned memory for `blocks` Argon2 blocks, wiped and released on drop.
pub struct ArgonMemory {
    ptr: NonNull<Block>,
    blocks: usize,
    /// Shared with the helper that faults it in and with the wipe it becomes, if any: the
    /// memory is released only when all are done with it.
    mapping: Arc<Mapping>,
    /// Whether the blocks were ever lent out (to Argon2). Memory that never was holds only the
    /// zeroes it was created with, and is released without a wipe.
    lent: bool,
}

impl ArgonMemory {
    pub fn new(blocks: usize) -> Self {
        let bytes = (blocks.max(1) * Block::SIZE).next_multiple_of(HUGE_PAGE);
        let mapping = Arc::new(Mapping::zeroed(bytes));
        Self {
            ptr: mapping.start,
            blocks,
            mapping,
            lent: false,
        }
    }

    fn bytes(&self) -> usize {
        self.blocks * Block::SIZE
    }

    /// The wipe this memory owes, if Argon2 ever had it; this value then owes nothing.
    fn take_wipe(&mut self) -> Option<Wipe> {
        if !std::mem::take(&mut self.lent) {
            return None;
        }
        let chunks = self.bytes().div_ceil(WIPE_CHUNK);
        Some(Wipe {
            start: self.ptr.cast::<AtomicU64>(),
            words: self.bytes() / size_of::<u64>(),
            next_chunk: AtomicUsize::new(0),
            zeroed: (0..chunks).map(|_| AtomicBool::new(false)).collect(),
            _mapping: Arc::clone(&self.mapping),
        })
    }
}

impl AsMut<[Block]> for ArgonMemory {
    fn as_mut(&mut self) -> &mut [Block] {
        self.lent = true;
        // SAFETY: `ptr` points to at least `blocks` zero-initialised, aligned blocks owned by
        // `self`, and the `&mut self` borrow makes this the only reference. A helper may be
        // faulting the same pages in meanwhile (`Mapping::fault_in`), which never reads or
        // writes their bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.blocks) }
    }
}

impl Drop for ArgonMemory {
    fn drop(&mut self) {
        // Dropping the wipe runs it, here.
        drop(self.take_wipe());
    }
}

// SAFETY: `ArgonMemory` owns its blocks exclusively, like a `Box<[Block]>`.
unsafe impl Send for ArgonMemory {}

/// The wipe of memory Argon2 wrote, in chunks that a helper claims one by one and the owner
/// finishes. Both zero through atomic stores, so a chunk zeroed by both at once is no data race,
/// and the owner never has to wait for the helper. Dropping a wipe finishes it, so whoever lets
/// go of it last cannot release the memory unwiped.
struct Wipe {
    start: NonNull<AtomicU64>,
    words: usize,
    next_chunk: AtomicUsize,
    /// Chunks known to be zero; set by whoever zeroed it, after the zeroes.
    zeroed: Box<[AtomicBool]>,
    _mapping: Arc<Mapping>,
}

impl Wipe {
    fn zero_chunk(&self, chunk: usize) {
        const WORDS: usize = WIPE_CHUNK / size_of::<u64>();
        let first = chunk * WORDS;
        let len = WORDS.min(self.words - first);
        // SAFETY: `first..first + len` lies inside the range, which the mapping keeps alive;
        // every access to it from here on is atomic, and the memory (8-byte aligned: it starts
        // on a huge page) was given up by its `ArgonMemory` before the wipe was shared.
        let words = unsafe { std::slice::from_raw_parts(self.start.as_ptr().add(first), len) };
        words
            .iter()
            .for_each(|word| word.store(0, Ordering::Relaxed));
        self.zeroed[chunk].store(true, Ordering::Release);
    }

    /// The helper's part: zeroes chunks until none is left to claim.
    fn run(&self) {
        loop {
            let chunk = self.next_chunk.fetch_add(1, Ordering::Relaxed);
            if chunk >= self.zeroed.len() {
                return;
            }
            self.zero_chunk(chunk);
        }
    }

    /// The owner's part: zeroes every chunk not known to be zero yet, the helper's current one
    /// included. When this returns the whole range is zero, and nothing was waited for.
    fn finish(&self) {
        self.run();
        for chunk in 0..self.zeroed.len() {
            if !self.zeroed[chunk].load(Ordering::Acquire) {
                self.zero_chunk(chunk);
            }
        }
    }
}

impl Drop for Wipe {
    fn drop(&mut self) {
        self.finish();
    }
}

// SAFETY: threads that share a `Wipe` only ever store zeroes atomically into its range.
unsafe impl Send for Wipe {}
unsafe impl Sync for Wipe {}

/// When the helper may start faulting memory in: once the owner takes (or gives back) memory
/// of the prepared size, so that it never competes with the owner's start (a thread that
/// faults pages in from the moment it starts made its own spawn, and the store's open after
/// it, slower by about a millisecond: BENCHMARKS.md); never, if the owner is dropped first.
/// Stop also ends a fault-in under way, between two huge pages.
struct StartSignal {
    state: Mutex<Start>,
    changed: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Waiting,
    Go,
    Stop,
}

impl StartSignal {
    fn set(&self, to: Start) {
        let mut state = lock(&self.state);
        if *state == Start::Waiting || to == Start::Stop {
            *state = to;
            self.changed.notify_all();
        }
    }

    /// Waits for a decision; true to go.
    fn wait(&self) -> bool {
        let mut state = lock(&self.state);
        while *state == Start::Waiting {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *state == Start::Go
    }

    fn stopped(&self) -> bool {
        *lock(&self.state) == Start::Stop
    }
}

/// Where a service's Argon2id evaluations get their working memory: fresh for each, or set up
/// ahead and wiped behind by a helper thread (see the module comment).
pub struct HashMemory {
    ahead: Option<Ahead>,
}

/// The memory [`HashMemory::ahead`] set up, and its helper thread.
struct Ahead {
    blocks: usize,
    /// In the order the helper faults them in.
    ready: Mutex<VecDeque<ArgonMemory>>,
    start: Arc<StartSignal>,
    /// Memory given back, which the helper wipes as it can and the owner finishes on drop.
    given_back: Mutex<Vec<Arc<Wipe>>>,
    to_helper: Mutex<Option<Sender<Arc<Wipe>>>>,
}

impl HashMemory {
    /// Fresh memory for every evaluation, wiped inline: for long-lived processes and anything
    /// that does not know ahead that it will hash.
    pub const ON_DEMAND: HashMemory = HashMemory { ahead: None };

    /// Sets up memory for `count` evaluations of `blocks` blocks: mapped now, all of it faulted
    /// in by a helper thread once the first is taken; the helper also wipes what is given back. Evaluations beyond
    /// `count`, or of another size (a hash stored with older parameters), get fresh memory. If
    /// no thread can be started, this is [`HashMemory::ON_DEMAND`].
    pub fn ahead(blocks: usize, count: usize) -> Self {
        let ready: VecDeque<ArgonMemory> = (0..count).map(|_| ArgonMemory::new(blocks)).collect();
        let to_fault_in: Vec<(Arc<Mapping>, usize)> = ready
            .iter()
            .map(|memory| (Arc::clone(&memory.mapping), memory.bytes()))
            .collect();
        let start = Arc::new(StartSignal {
            state: Mutex::new(Start::Waiting),
            changed: Condvar::new(),
        });
        let (to_helper, wipes) = mpsc::channel::<Arc<Wipe>>();
        let helper_start = Arc::clone(&start);
        // Detached: the owner never waits for it (see `Wipe::finish`), and it ends by itself
        // once the owner is gone.
        let helper = std::thread::Builder::new()
            .name("sparekey-memory".into())
            .spawn(move || {
                if helper_start.wait() {
                    for (mapping, bytes) in to_fault_in {
                        mapping.fault_in(bytes, &helper_start);
                    }
                }
                lower_own_priority();
                wipes.into_iter().for_each(|wipe| wipe.run());
            });
        match helper {
            Ok(_) => Self {
                ahead: Some(Ahead {
                    blocks,
                    ready: Mutex::new(ready),
                    start,
                    given_back: Mutex::new(Vec::new()),
                    to_helper: Mutex::new(Some(to_helper)),
                }),
            },
            Err(_) => Self::ON_DEMAND,
        }
    }

    /// Memory for one evaluation of `blocks` blocks: memory set up ahead if there is some left
    /// of that size, otherwise fresh. The first take of that size lets the helper start
    /// faulting the prepared memory in, ahead of Argon2's first pass through it. Never waits.
    pub fn take(&self, blocks: usize) -> ArgonMemory {
        let Some(ahead) = self.ahead.as_ref().filter(|ahead| ahead.blocks == blocks) else {
            return ArgonMemory::new(blocks);
        };
        ahead.start.set(Start::Go);
        let prepared = lock(&ahead.ready).pop_front();
        prepared.unwrap_or_else(|| ArgonMemory::new(blocks))
    }

    /// Releases memory after an evaluation. With a helper, the wipe is left to it and finished
    /// by this value's drop at the latest (the memory stays mapped until then: 19 MiB for each
    /// evaluation, for a process that makes one or two); otherwise it happens here.
    pub fn give_back(&self, mut memory: ArgonMemory) {
        let (Some(ahead), Some(wipe)) = (&self.ahead, memory.take_wipe()) else {
            return drop(memory);
        };
        // A helper still waiting (the memory was of another size) must get to the wipe.
        ahead.start.set(Start::Go);
        let wipe = Arc::new(wipe);
        lock(&ahead.given_back).push(Arc::clone(&wipe));
        if let Some(to_helper) = lock(&ahead.to_helper).as_ref() {
            // If the helper is gone (it cannot be, short of a panic), drop finishes the wipe.
            let _ = to_helper.send(wipe);
        }
    }
}

impl Drop for HashMemory {
    /// Finishes every wipe the helper has not: when this returns, all memory given back is
    /// zero. The helper is told to stop faulting memory in, and is not waited for.
    fn drop(&mut self) {
        let Some(ahead) = &mut self.ahead else {
            return;
        };
        ahead.start.set(Start::Stop);
        lock(&ahead.to_helper).take();
        for wipe in lock(&ahead.given_back).drain(..) {
            wipe.finish();
        }
    }
}

/// A poisoned lock here only means another thread panicked while taking or giving back memory;
/// the lists themselves are intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes the calling thread run only when a CPU would otherwise be idle, so that waking it does
/// not preempt the thread it serves. Best effort: if refused, it runs at normal priority.
#[cfg(target_os = "linux")]
fn lower_own_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: changes only the calling thread's policy (pid 0); `param` is valid for the call.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_own_priority() {}

/// An anonymous private mapping with room to align `bytes` to a huge page inside it, released
/// on drop.
#[cfg(target_os = "linux")]
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    /// The aligned start of the usable bytes.
    start: NonNull<Block>,
}

#[cfg(target_os = "linux")]
impl Mapping {
    fn zeroed(bytes: usize) -> Self {
        let len = bytes + HUGE_PAGE;
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(bytes, HUGE_PAGE).expect("a valid layout"),
            );
        }
        let aligned = (base as usize).next_multiple_of(HUGE_PAGE) as *mut libc::c_void;
        // SAFETY: `aligned..aligned + bytes` lies inside the mapping (it has a spare huge page).
        // The advice is a hint: if the kernel refuses it, the memory is still valid and zero.
        unsafe {
            libc::madvise(aligned, bytes, libc::MADV_HUGEPAGE);
        }
        let start = NonNull::new(aligned.cast::<Block>()).expect("mmap never returns null");
        Self { base, len, start }
    }

    /// Backs the first `bytes` with memory, huge page by huge page, until done or stopped.
    /// `MADV_POPULATE_WRITE` faults pages in as a write would, without reading or writing a
    /// byte, so Argon2 may be writing the same memory meanwhile: whichever faults a page first,
    /// the other finds it backed. Kernels before 5.14 refuse it; the pages are then faulted in
    /// by Argon2's first writes, as without a helper.
    fn fault_in(&self, bytes: usize, start: &StartSignal) {
        let bytes = bytes.min(self.len - HUGE_PAGE);
        for offset in (0..bytes).step_by(HUGE_PAGE) {
            if start.stopped() {
                return;
            }
            let len = HUGE_PAGE.min(bytes - offset);
            // SAFETY: the range lies inside this live mapping (`self` keeps it mapped), and the
            // advice changes no byte of it.
            let rc = unsafe {
                libc::madvise(
                    self.start.as_ptr().cast::<u8>().add(offset).cast(),
                    len,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if rc != 0 {
                return;
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `zeroed`, unmapped only
        // here, when no `ArgonMemory`, wipe or helper refers to it any more.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Zeroed heap memory aligned to a huge page, where anonymous mappings are not used.
#[cfg(not(target_os = "linux"))]
struct Mapping {
    layout: std::alloc::Layout,
    start: NonNull<Block>,
}

#[cfg(not(target_os = "linux"))]
impl Mapping {
    fn zeroed(bytes: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(bytes, HUGE_PAGE).expect("a valid layout");
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid `Block` (an array of
        // u64), and the alignment (2 MiB) is a multiple of `Block`'s (64 bytes).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(start) = NonNull::new(base.cast::<Block>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { layout, start }
    }

    /// Nothing to do here: the memory is the allocator's, faulted in as the allocator and the
    /// system see fit.
    fn fault_in(&self, _bytes: usize, _start: &StartSignal) {}
}

#[cfg(not(target_os = "linux"))]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this same layout, and freed only here.
        unsafe { std::alloc::dealloc(self.start.as_ptr().cast(), self.layout) }
    }
}

// SAFETY: a `Mapping` is only an address range; who may touch its bytes is decided by the
// `ArgonMemory` or `Wipe` that holds it. Faulting it in reads and writes nothing.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `memory` the kernel has backed (mincore), in 4 KiB pages.
    #[cfg(target_os = "linux")]
    fn resident_pages(memory: &ArgonMemory) -> usize {
        let len = memory.bytes();
        let mut residency = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the range is the live, page-aligned mapping behind `memory`, and `residency`
        // has one byte per 4 KiB page of it (the smallest page size on Linux).
        let rc = unsafe { libc::mincore(memory.ptr.as_ptr().cast(), len, residency.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        residency.iter().filter(|r| *r & 1 == 1).count()
    }

    /// Whether this kernel faults pages in on `MADV_POPULATE_WRITE` (5.14 and later).
    #[cfg(target_os = "linux")]
    fn populate_write_works() -> bool {
        let mapping = Mapping::zeroed(HUGE_PAGE);
        // SAFETY: advice on a live mapping of ours; it changes no byte.
        unsafe {
            libc::madvise(
                mapping.start.as_ptr().cast(),
                4096,
                libc::MADV_POPULATE_WRITE,
            ) == 0
        }
    }

    /// Whether the first `bytes` of `mapping` are zero, read atomically: a helper may still be
    /// storing zeroes into chunks the owner has already zeroed.
    fn mapping_is_zero(mapping: &Mapping, bytes: usize) -> bool {
        #[cfg(target_os = "linux")]
        debug_assert!(bytes <= mapping.len - HUGE_PAGE);
        // SAFETY: the caller's `Arc` keeps the mapping alive, it is 8-byte aligned, `bytes` is
        // inside it, and every access to it from here on is atomic.
        let words = unsafe {
            std::slice::from_raw_parts(mapping.start.as_ptr().cast::<AtomicU64>(), bytes / 8)
        };
        words.iter().all(|word| word.load(Ordering::Acquire) == 0)
    }

    fn all_zero(memory: &mut ArgonMemory) -> bool {
        memory
            .as_mut()
            .iter()
            .all(|block| block.as_ref().iter().all(|word| *word == 0))
    }

    #[test]
    fn memory_is_zeroed_aligned_and_sized() {
        let mut memory = ArgonMemory::new(19_456);
        let blocks = memory.as_mut();
        assert_eq!(blocks.len(), 19_456);
        assert_eq!(blocks.as_ptr() as usize % HUGE_PAGE, 0);
        assert!(all_zero(&mut memory));
    }

    /// The huge-page advice only works if it comes before the first touch: memory that an
    /// allocator had already zeroed is resident in 4 KiB pages by the time it is advised.
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_memory_is_untouched_until_argon2_writes_it() {
        let mut memory = ArgonMemory::new(19_456);
        assert_eq!(resident_pages(&memory), 0);
        memory.as_mut()[0] = Block::new();
        assert!(resident_pages(&memory) > 0, "a written page is resident");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn memory_set_up_ahead_is_faulted_in_and_still_zero() {
        if !populate_write_works() {
            eprintln!("MADV_POPULATE_WRITE is not supported here (kernel < 5.14?): skipped");
            return;
        }
        let memory = HashMemory::ahead(4_096, 2);
        // Nothing is faulted in before the first memory is taken.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let ahead = memory.ahead.as_ref().expect("a helper was started");
        assert!(
            lock(&ahead.ready)
                .iter()
                .all(|memory| resident_pages(memory) == 0)
        );
        let mut first = memory.take(4_096);
        let mut second = memory.take(4_096);
        // The helper gets there eventually: poll rather than guess a time.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while resident_pages(&second) < 4_096 * 1024 / 4096 {
            assert!(
                std::time::Instant::now() < deadline,
                "the helper never faulted the memory in"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(resident_pages(&first), 4_096 * 1024 / 4096);
        assert!(all_zero(&mut first) && all_zero(&mut second));
        // Only `count` are set up; a third, or one of another size, is fresh.
        assert_eq!(resident_pages(&memory.take(4_096)), 0);
        assert_eq!(resident_pages(&memory.take(1_024)), 0);
    }

    /// Written while the helper may still be faulting it in, the memory keeps every write and
    /// starts zero, whoever got to which page first.
    #[test]
    fn memory_taken_at_once_is_zero_and_whole() {
        for _ in 0..20 {
            let memory = HashMemory::ahead(2_048, 1);
            let mut taken = memory.take(2_048);
            assert!(all_zero(&mut taken));
            taken
                .as_mut()
                .iter_mut()
                .for_each(|block| block.as_mut().fill(3));
            assert!(
                taken
                    .as_mut()
                    .iter()
                    .all(|block| block.as_ref().iter().all(|word| *word == 3)),
                "a write was lost while the helper faulted pages in"
            );
            memory.give_back(taken);
        }
    }

    /// What Argon2 wrote is zero once the memory is given back and its `HashMemory` dropped,
    /// whether the helper or the owner did the wiping. The bytes are read through a second
    /// handle on the mapping, which keeps it mapped.
    #[cfg(target_os = "linux")]
    #[test]
    fn memory_given_back_is_wiped_before_its_owner_is_gone() {
        for count in [1, 3] {
            let memory = HashMemory::ahead(2_048, count);
            let mut lent = memory.take(2_048);
            lent.as_mut()
                .iter_mut()
                .for_each(|block| block.as_mut().fill(0xA5A5_A5A5_A5A5_A5A5));
            let watch = Arc::clone(&lent.mapping);
            let blocks = lent.blocks;
            memory.give_back(lent);
            drop(memory);
            assert!(
                mapping_is_zero(&watch, blocks * 1024),
                "count {count}: not wiped"
            );
        }
    }

    #[test]
    fn a_shared_wipe_is_whole_once_the_owner_finishes_it_without_waiting() {
        let mut memory = ArgonMemory::new(3_000);
        memory
            .as_mut()
            .iter_mut()
            .for_each(|block| block.as_mut().fill(u64::MAX));
        let watch = Arc::clone(&memory.mapping);
        let wipe = Arc::new(memory.take_wipe().expect("lent memory owes a wipe"));
        drop(memory);
        let other = Arc::clone(&wipe);
        let helper = std::thread::spawn(move || other.run());
        // `finish` alone must be enough: the helper is not waited for before the check.
        wipe.finish();
        assert!(mapping_is_zero(&watch, 3_000 * 1024));
        helper.join().expect("the helper wipes without panicking");
    }

    #[test]
    fn memory_argon2_never_had_owes_no_wipe_and_a_dropped_wipe_finishes_itself() {
        let mut untouched = ArgonMemory::new(16);
        assert!(untouched.take_wipe().is_none());
        let mut lent = ArgonMemory::new(600);
        lent.as_mut()
            .iter_mut()
            .for_each(|block| block.as_mut().fill(7));
        let watch = Arc::clone(&lent.mapping);
        let wipe = lent.take_wipe().expect("lent memory owes a wipe");
        assert!(lent.take_wipe().is_none(), "the duty moved to the wipe");
        drop(wipe);
        assert!(mapping_is_zero(&watch, 600 * 1024));
    }
}
