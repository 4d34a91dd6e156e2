//! The working memory of one Argon2id evaluation (19 MiB with OWASP parameters), mapped so that
//! the kernel can back it with 2 MiB pages from the first touch.
//!
//! Why: a fresh 19 MiB buffer in 4 KiB pages costs about 5,000 page faults the first time it is
//! touched, which in a short-lived `sparekey login` process was a large share of the whole run
//! (BENCHMARKS.md). On Linux the buffer is an anonymous mapping (already zero, so nothing writes
//! it before Argon2 does), aligned to 2 MiB and marked `MADV_HUGEPAGE` before any page is
//! touched: it then faults about ten times. An allocator's `alloc_zeroed` cannot do this, as it
//! writes the zeroes itself before the advice can be given. Elsewhere it is ordinary zeroed heap
//! memory. The bytes Argon2 wrote are wiped before the memory is released: they were derived
//! from a password or a code. Must never hand out memory that is not zeroed or not aligned for
//! [`Block`].

use std::ptr::NonNull;

use argon2::Block;
use zeroize::Zeroize;

const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Zeroed, [`Block`]-aligned memory for `blocks` Argon2 blocks, wiped and released on drop.
pub struct ArgonMemory {
    ptr: NonNull<Block>,
    blocks: usize,
    region: Region,
}

impl ArgonMemory {
    pub fn new(blocks: usize) -> Self {
        let bytes = (blocks.max(1) * Block::SIZE).next_multiple_of(HUGE_PAGE);
        let (ptr, region) = Region::zeroed(bytes);
        Self {
            ptr,
            blocks,
            region,
        }
    }
}

impl AsMut<[Block]> for ArgonMemory {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: `ptr` points to at least `blocks` zero-initialised, aligned blocks owned by
        // `self`, and the `&mut self` borrow makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.blocks) }
    }
}

impl Drop for ArgonMemory {
    fn drop(&mut self) {
        // Only the first `blocks` blocks were ever handed out, so only they can hold anything.
        self.as_mut().iter_mut().for_each(|block| {
            // SAFETY: a `Block` is 1 KiB of plain integers; viewing it as bytes is valid.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut((block as *mut Block).cast::<u8>(), Block::SIZE)
            };
            bytes.zeroize();
        });
        self.region.release();
    }
}

// SAFETY: `ArgonMemory` owns its memory exclusively, like a `Box<[Block]>`.
unsafe impl Send for ArgonMemory {}

/// An anonymous private mapping with room to align `bytes` to a huge page inside it.
#[cfg(target_os = "linux")]
struct Region {
    base: *mut libc::c_void,
    len: usize,
}

#[cfg(target_os = "linux")]
impl Region {
    fn zeroed(bytes: usize) -> (NonNull<Block>, Self) {
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
        let start = (base as usize).next_multiple_of(HUGE_PAGE);
        let aligned = start as *mut libc::c_void;
        // SAFETY: `aligned..aligned + bytes` lies inside the mapping (it has a spare huge page).
        // The advice is a hint: if the kernel refuses it, the memory is still valid and zero.
        unsafe {
            libc::madvise(aligned, bytes, libc::MADV_HUGEPAGE);
        }
        let ptr = NonNull::new(aligned.cast::<Block>()).expect("mmap never returns null");
        (ptr, Self { base, len })
    }

    fn release(&mut self) {
        // SAFETY: `base..base + len` is exactly the mapping made in `zeroed`, unmapped only here.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Zeroed heap memory aligned to a huge page, where anonymous mappings are not used.
#[cfg(not(target_os = "linux"))]
struct Region {
    base: *mut u8,
    layout: std::alloc::Layout,
}

#[cfg(not(target_os = "linux"))]
impl Region {
    fn zeroed(bytes: usize) -> (NonNull<Block>, Self) {
        let layout = std::alloc::Layout::from_size_align(bytes, HUGE_PAGE).expect("a valid layout");
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid `Block` (an array of
        // u64), and the alignment (2 MiB) is a multiple of `Block`'s (64 bytes).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(base.cast::<Block>()) else {
            std::alloc::handle_alloc_error(layout)
        };
        (ptr, Self { base, layout })
    }

    fn release(&mut self) {
        // SAFETY: allocated in `zeroed` with this same layout, and freed only here.
        unsafe { std::alloc::dealloc(self.base, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `memory` the kernel has backed (mincore), in 4 KiB pages.
    #[cfg(target_os = "linux")]
    fn resident_pages(memory: &mut ArgonMemory) -> usize {
        let blocks = memory.as_mut();
        let len = blocks.len() * Block::SIZE;
        let mut residency = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the range is the live, page-aligned allocation behind `blocks`, and
        // `residency` has one byte per 4 KiB page of it (the smallest page size on Linux).
        let rc = unsafe { libc::mincore(blocks.as_mut_ptr().cast(), len, residency.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        residency.iter().filter(|r| *r & 1 == 1).count()
    }

    #[test]
    fn memory_is_zeroed_aligned_and_sized() {
        let mut memory = ArgonMemory::new(19_456);
        let blocks = memory.as_mut();
        assert_eq!(blocks.len(), 19_456);
        assert_eq!(blocks.as_ptr() as usize % HUGE_PAGE, 0);
        let bytes =
            unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), 19_456 * 1024) };
        assert!(bytes.iter().all(|b| *b == 0));
    }

    /// The huge-page advice only works if it comes before the first touch: memory that an
    /// allocator had already zeroed is resident in 4 KiB pages by the time it is advised.
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_memory_is_untouched_until_argon2_writes_it() {
        let mut memory = ArgonMemory::new(19_456);
        assert_eq!(resident_pages(&mut memory), 0);
        memory.as_mut()[0] = Block::new();
        assert!(
            resident_pages(&mut memory) > 0,
            "a written page is resident"
        );
    }
}
