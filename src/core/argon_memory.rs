//! The working memory of one Argon2id evaluation (19 MiB with OWASP parameters), allocated so
//! that the kernel can back it with 2 MiB pages.
//!
//! Why: a fresh 19 MiB buffer in 4 KiB pages costs about 4,900 page faults the first time
//! Argon2 fills it, which in a short-lived `sparekey login` process was a third of the whole
//! run (BENCHMARKS.md). Aligned to 2 MiB and marked `MADV_HUGEPAGE`, the same buffer faults about
//! ten times. The buffer is zeroed before it is freed: it held material derived from a password
//! or a code. Must never hand out memory that is not zeroed or not aligned for [`Block`].

use std::alloc::{Layout, alloc_zeroed, dealloc, handle_alloc_error};
use std::ptr::NonNull;

use argon2::Block;
use zeroize::Zeroize;

const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Zeroed, 2 MiB-aligned memory for `blocks` Argon2 blocks, freed (and wiped) on drop.
pub struct ArgonMemory {
    ptr: NonNull<Block>,
    blocks: usize,
    layout: Layout,
}

impl ArgonMemory {
    pub fn new(blocks: usize) -> Self {
        let bytes = (blocks.max(1) * Block::SIZE).next_multiple_of(HUGE_PAGE);
        let layout = Layout::from_size_align(bytes, HUGE_PAGE).expect("a valid layout");
        // SAFETY: the layout has a non-zero size. Zeroed memory is a valid `Block` (an array of
        // u64), and the alignment (2 MiB) is a multiple of `Block`'s (64 bytes).
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<Block>()) else {
            handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        // SAFETY: the range is exactly the allocation above. The advice is a hint: if the kernel
        // refuses it, the memory is still valid with ordinary pages.
        unsafe {
            libc::madvise(raw.cast(), bytes, libc::MADV_HUGEPAGE);
        }
        Self {
            ptr,
            blocks,
            layout,
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
        // SAFETY: the bytes are owned by `self` and initialised; viewing them as bytes is valid.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.layout.size())
        };
        bytes.zeroize();
        // SAFETY: allocated in `new` with this same layout, and freed only here.
        unsafe { dealloc(self.ptr.as_ptr().cast(), self.layout) }
    }
}

// SAFETY: `ArgonMemory` owns its allocation exclusively, like a `Box<[Block]>`.
unsafe impl Send for ArgonMemory {}

#[cfg(test)]
mod tests {
    use super::*;

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
}
