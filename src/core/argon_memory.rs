//! The working memory of Argon2id evaluations (19 MiB with OWASP parameters): how it is
//! obtained, reused from one evaluation to the next, wiped and released.
//!
//! The memory is an anonymous mapping aligned to 2 MiB and advised for huge pages before any
//! page is touched, so a fresh buffer faults about ten times instead of about 5,000 times in
//! 4 KiB pages; an allocator's zeroed memory cannot be advised in time, as the allocator has
//! written its zeroes by then. If the mapping is refused, zeroed heap memory is used instead.
//! Reusing it spares a second evaluation (a backup-code login hashes twice) the faults again.
//!
//! Must never let the bytes Argon2 wrote, which are derived from a password or a code, outlive
//! the evaluation that wrote them: [`ArgonMemory::with_blocks`] zeroes them when the evaluation
//! returns or unwinds, so memory that waits for reuse or is released holds only zeroes. Must
//! never start a thread, and never hand an evaluation blocks of another count than it asked for.

use std::sync::{Mutex, TryLockError};

use argon2::Block;
use zeroize::Zeroize;

/// Memory for Argon2 evaluations, zero whenever no evaluation runs in it. Empty until the first
/// evaluation; kept, at the size of the last one, until dropped.
#[derive(Default)]
pub struct ArgonMemory {
    region: Option<Region>,
}

impl ArgonMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `evaluate` on `count` zeroed blocks, the ones of the last evaluation if it had the
    /// same count (otherwise they are released and new ones obtained), and zeroes them again
    /// when `evaluate` returns or panics.
    pub fn with_blocks<T>(&mut self, count: usize, evaluate: impl FnOnce(&mut [Block]) -> T) -> T {
        // Released, if of another count, before the new memory is obtained.
        drop(self.region.take_if(|region| region.blocks().len() != count));
        let region = self.region.get_or_insert_with(|| Region::new(count));
        let wiped = WipeOnExit(region.blocks());
        evaluate(&mut *wiped.0)
    }
}

/// Zeroes the blocks it holds when dropped, which a panic in the evaluation does too. `zeroize`
/// writes through volatile stores, which the compiler may not remove as dead.
struct WipeOnExit<'a>(&'a mut [Block]);

impl Drop for WipeOnExit<'_> {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(Zeroize::zeroize);
    }
}

enum Region {
    #[cfg(target_os = "linux")]
    Mapped(Mapping),
    Heap(Box<[Block]>),
}

impl Region {
    fn new(count: usize) -> Self {
        #[cfg(target_os = "linux")]
        if let Some(mapping) = Mapping::new(count) {
            return Region::Mapped(mapping);
        }
        Region::Heap(vec![Block::new(); count].into_boxed_slice())
    }

    fn blocks(&mut self) -> &mut [Block] {
        match self {
            #[cfg(target_os = "linux")]
            Region::Mapped(mapping) => mapping.blocks(),
            Region::Heap(blocks) => blocks,
        }
    }
}

/// The [`ArgonMemory`] of a service, shared by its evaluations. An evaluation that finds it in
/// use by another (on another thread) works in memory of its own, released when it ends, rather
/// than wait.
#[derive(Default)]
pub struct SharedMemory(Mutex<ArgonMemory>);

impl SharedMemory {
    pub fn with_memory<T>(&self, evaluate: impl FnOnce(&mut ArgonMemory) -> T) -> T {
        match self.0.try_lock() {
            Ok(mut memory) => evaluate(&mut memory),
            // A panic in an evaluation still zeroed the memory (`with_blocks`): fit for reuse.
            Err(TryLockError::Poisoned(poisoned)) => evaluate(&mut poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => evaluate(&mut ArgonMemory::new()),
        }
    }
}

const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// `count` blocks at the start of a huge page inside an anonymous private mapping of their
/// own, `base..base + len`, unmapped on drop.
#[cfg(target_os = "linux")]
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    start: *mut Block,
    count: usize,
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
impl Mapping {
    /// A fresh mapping, advised for huge pages before any page of it is touched; `None` if the
    /// kernel refuses it (or the size overflows).
    fn new(count: usize) -> Option<Self> {
        let bytes = (count.max(1).checked_mul(Block::SIZE)?).checked_next_multiple_of(HUGE_PAGE)?;
        // A spare huge page, so that an aligned start fits.
        let len = bytes.checked_add(HUGE_PAGE)?;
        let (rw, private) = (
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        );
        // SAFETY: asks for a new anonymous mapping wherever the kernel chooses; no existing
        // memory is affected.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, rw, private, -1, 0) };
        if base == libc::MAP_FAILED {
            return None;
        }
        // In bounds: the offset is below one huge page, the spare one.
        let offset = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
        let start = base.cast::<u8>().wrapping_add(offset).cast::<Block>();
        // SAFETY: `start..start + bytes` lies inside the mapping just made. The advice changes
        // no byte; if the kernel refuses it, the pages are 4 KiB ones, still valid and zero.
        unsafe { libc::madvise(start.cast(), bytes, libc::MADV_HUGEPAGE) };
        Some(Self {
            base,
            len,
            start,
            count,
        })
    }

    fn blocks(&mut self) -> &mut [Block] {
        // SAFETY: `start` points to `count` blocks inside the live mapping, aligned to a huge
        // page (more than `Block`'s 64 bytes) and initialised: a fresh anonymous mapping reads
        // as zeroes, any bytes are a valid `Block` (`[u64; 128]`), and only `Block`s are ever
        // written. The `&mut self` borrow makes the slice the only reference to them.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.count) }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `new`, unmapped only here;
        // no slice of it outlives `self`, as `blocks` borrows it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

// SAFETY: a `Mapping` owns its pages exclusively, like a `Box<[Block]>`; nothing in it is tied
// to the thread that made it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_zero(blocks: &[Block]) -> bool {
        blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0))
    }

    /// Pages of `blocks` the kernel has backed (mincore), in 4 KiB pages.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn resident_pages(blocks: &[Block]) -> usize {
        let len = size_of_val(blocks);
        let mut residency = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the range is live, page-aligned memory of a mapping, and `residency` has one
        // byte per 4 KiB page of it (the smallest page size on Linux).
        let rc = unsafe { libc::mincore(blocks.as_ptr() as *mut _, len, residency.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        residency.iter().filter(|r| *r & 1 == 1).count()
    }

    /// The huge-page advice only works if it comes before the first touch: memory that an
    /// allocator had already zeroed is resident in 4 KiB pages by the time it is advised.
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_memory_is_aligned_and_untouched_until_argon2_writes_it() {
        ArgonMemory::new().with_blocks(19_456, |blocks| {
            assert_eq!(
                (blocks.len(), blocks.as_ptr() as usize % HUGE_PAGE),
                (19_456, 0)
            );
            assert_eq!(resident_pages(blocks), 0);
            blocks[0] = Block::new();
            assert!(resident_pages(blocks) > 0, "a written page is resident");
            assert!(is_zero(blocks));
        });
    }

    #[test]
    fn memory_is_wiped_after_each_evaluation_even_one_that_panics() {
        let mut memory = ArgonMemory::new();
        let write = |blocks: &mut [Block]| blocks.iter_mut().for_each(|b| b.as_mut().fill(0xA5));
        memory.with_blocks(600, write);
        assert!(memory.with_blocks(600, |b| is_zero(b)), "not wiped");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            memory.with_blocks(600, |blocks| {
                write(blocks);
                panic!("an evaluation that fails halfway");
            })
        }));
        assert!(panicked.is_err());
        assert!(
            memory.with_blocks(600, |b| is_zero(b)),
            "not wiped after a panic"
        );
    }

    /// Reused memory keeps the pages an evaluation faulted in; another count gets fresh ones.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_same_count_reuses_the_memory_and_another_count_reallocates() {
        let mut memory = ArgonMemory::new();
        memory.with_blocks(1_024, |blocks| blocks.fill(Block::new()));
        let all = 1_024 * Block::SIZE / 4096;
        memory.with_blocks(1_024, |b| assert_eq!(resident_pages(b), all, "not reused"));
        memory.with_blocks(512, |b| assert_eq!((b.len(), resident_pages(b)), (512, 0)));
    }

    #[test]
    fn a_concurrent_evaluation_gets_memory_of_its_own() {
        let shared = SharedMemory::default();
        let address = |blocks: &mut [Block]| blocks.as_ptr() as usize;
        let outer = shared.with_memory(|memory| {
            memory.with_blocks(256, |blocks| {
                let inner = shared.with_memory(|other| other.with_blocks(256, address));
                assert_ne!(inner, address(blocks), "two evaluations in the same memory");
                address(blocks)
            })
        });
        let again = shared.with_memory(|memory| memory.with_blocks(256, address));
        assert_eq!(again, outer, "the service's memory was not reused");
    }
}
