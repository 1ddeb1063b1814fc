//! A bump allocator for short-lived plugin calls.
//!
//! A plugin call lives a few milliseconds and makes a few hundred
//! allocations; musl's allocator maps and unmaps a page for many of them and
//! serves each receive buffer from a mapping of its own. Here allocations
//! come from one static block (in `.bss`: its pages are touched only as far
//! as they are used) by moving a pointer. Only the most recent allocation is
//! freed (and grown in place); everything else stays until the process
//! exits, so the block is a bound, not a pool: once it is used up, and for
//! large requests, the system allocator serves them. A long-lived process
//! (the DHCP daemon, the nftables keeper) thus ends up on the system
//! allocator after its first megabyte.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests larger than this go to the system allocator from the start: a
/// large buffer would use up the block in a few calls.
const BIG: usize = 256 * 1024;

/// A bump allocator over `N` bytes of its own.
#[repr(C, align(4096))]
pub struct Arena<const N: usize> {
    space: UnsafeCell<[u8; N]>,
    /// The offset in `space` of the first byte not handed out.
    top: AtomicUsize,
    /// How far `top` ever reached: the bytes past it were never handed out
    /// and are still the zeros of `.bss`, so a zeroed allocation there
    /// writes nothing (writing would touch every page of a large buffer).
    high: AtomicUsize,
}

// SAFETY: `space` is only reached through pointers to disjoint ranges that
// `top`'s compare-and-swap hands out to one caller each; nothing reads or
// writes it through a shared reference.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena { space: UnsafeCell::new([0; N]), top: AtomicUsize::new(0), high: AtomicUsize::new(0) }
    }

    fn base(&self) -> usize {
        self.space.get() as usize
    }

    /// The offset of `p` in the block, when it is from the block.
    fn offset(&self, p: *mut u8) -> Option<usize> {
        (p as usize).checked_sub(self.base()).filter(|&off| off < N)
    }

    /// Record that the bytes up to `end` are in use, before they are handed
    /// out; returns how far they had been before.
    fn reach(&self, end: usize) -> usize {
        self.high.fetch_max(end, Ordering::AcqRel)
    }

    /// A range for `l` at the top of the block, or None when it does not fit.
    fn bump(&self, l: Layout) -> Option<*mut u8> {
        self.bump_reach(l).map(|(p, _)| p)
    }

    /// [`Arena::bump`], also saying how many of the range's bytes (from its
    /// start) may have been used before.
    fn bump_reach(&self, l: Layout) -> Option<(*mut u8, usize)> {
        if l.size() > BIG {
            return None;
        }
        let base = self.base();
        let mut top = self.top.load(Ordering::Acquire);
        loop {
            // The address, not the offset, is aligned: exact for any alignment.
            let start = (base + top).checked_add(l.align() - 1)? & !(l.align() - 1);
            let end = (start - base).checked_add(l.size()).filter(|&e| e <= N)?;
            match self.top.compare_exchange_weak(top, end, Ordering::AcqRel, Ordering::Acquire) {
                // The range lies inside `space` (end <= N), so the pointer
                // keeps the block's provenance.
                Ok(_) => {
                    let used = self.reach(end).saturating_sub(start - base).min(l.size());
                    return Some((self.space.get().cast::<u8>().wrapping_add(start - base), used));
                }
                Err(now) => top = now,
            }
        }
    }
}

// SAFETY: every pointer returned is either from `System` or a range of
// `space` of at least `layout.size()` bytes aligned to `layout.align()` that
// no other live allocation overlaps: `top` only moves past a range when it
// is handed out (compare-and-swap, so two threads never get the same one)
// and only moves back over the most recent allocation when that one is
// freed. Pointers are told apart by address, and `System` never returns one
// inside the static block.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: the caller's layout is passed on as it is (non-zero size).
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.bump_reach(layout) {
            Some((p, used)) => {
                // SAFETY: `p` has `layout.size()` bytes of its own and `used` is at most that.
                unsafe { p.write_bytes(0, used) };
                p
            }
            // SAFETY: the caller's layout is passed on as it is (non-zero size).
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset(ptr) {
            Some(off) => {
                // The most recent allocation gives its range back; any other
                // stays used (a failed swap means it was not the most recent).
                let _ = self.top.compare_exchange(off + layout.size(), off, Ordering::AcqRel, Ordering::Relaxed);
            }
            // SAFETY: not from the block, so `System` returned it for this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(off) = self.offset(ptr) else {
            // SAFETY: the caller's arguments, for a pointer `System` returned.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        let end = off + layout.size();
        if new_size <= layout.size() {
            // Shrinking stays in place; the most recent allocation gives the rest back.
            let _ = self.top.compare_exchange(end, off + new_size, Ordering::AcqRel, Ordering::Relaxed);
            return ptr;
        }
        if new_size <= BIG
            && off + new_size <= N
            && self.top.compare_exchange(end, off + new_size, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.reach(off + new_size);
            return ptr;
        }
        // SAFETY: the caller guarantees that new_size, rounded up to the
        // alignment, does not overflow isize, so the layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (larger than the old one).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both are live allocations of at least `layout.size()`
            // bytes, distinct (the old one is still held).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            // SAFETY: `ptr` was allocated here with `layout`.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 64 * 1024;

    fn arena() -> Box<Arena<N>> {
        Box::new(Arena::new())
    }

    fn inside(a: &Arena<N>, p: *mut u8) -> bool {
        a.offset(p).is_some()
    }

    fn lay(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    // The tests call the allocator as the runtime would: with non-zero
    // layouts, freeing each pointer once with the layout it was made with.

    #[test]
    fn every_alignment_is_exact() {
        let a = arena();
        for align in [1, 2, 4, 8, 16, 32, 64, 256, 4096, 8192] {
            let l = lay(3, align);
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(l) };
            assert!(inside(&a, p));
            assert!((p as usize).is_multiple_of(align), "align {align}");
        }
        // Larger than the block's own alignment: met in the block or by the system.
        let l = lay(1, 1 << 20);
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null() && (p as usize).is_multiple_of(1 << 20));
        // SAFETY: allocated above with `l`.
        unsafe { a.dealloc(p, l) };
    }

    #[test]
    fn the_last_allocation_is_freed_and_others_are_not() {
        let a = arena();
        let l = lay(104, 8);
        // SAFETY: non-zero sizes; each pointer freed once with its layout.
        unsafe {
            let p = a.alloc(l);
            let q = a.alloc(l);
            a.dealloc(q, l);
            assert_eq!(a.alloc(l), q, "the freed last block is handed out again");
            a.dealloc(p, l); // not the last: stays used
            let r = a.alloc(l);
            assert!(r > q);
            a.dealloc(r, l);
            a.dealloc(q, l);
            // now p is the last again but was already freed: the top sits after it
            assert_eq!(a.top.load(Ordering::Relaxed), p as usize - a.base() + 104);
        }
    }

    #[test]
    fn realloc_grows_the_last_in_place_and_moves_others() {
        let a = arena();
        let l = lay(16, 8);
        // SAFETY: non-zero sizes; pointers used as the realloc contract says.
        unsafe {
            let p = a.alloc(l);
            p.write_bytes(0xab, 16);
            let p2 = a.realloc(p, l, 1000);
            assert_eq!(p2, p, "the last allocation grows in place");
            let q = a.alloc(l);
            let p3 = a.realloc(p2, lay(1000, 8), 2000);
            assert!(p3 > q && inside(&a, p3), "moved past the newer allocation");
            assert!((0..16).all(|i| *p3.add(i) == 0xab));
            let p4 = a.realloc(p3, lay(2000, 8), 10);
            assert_eq!(p4, p3, "shrinking stays in place");
            a.dealloc(p4, lay(10, 8));
            a.dealloc(q, l);
        }
    }

    #[test]
    fn big_requests_and_an_exhausted_block_go_to_the_system() {
        let a = arena();
        // SAFETY: non-zero sizes; each pointer freed once with its layout.
        unsafe {
            let big = lay(BIG + 1, 8);
            let p = a.alloc(big);
            assert!(!p.is_null() && !inside(&a, p));
            a.dealloc(p, big);

            // grown across the end of the block: moved to the system, bytes kept
            let l = lay(N - 64, 8);
            let q = a.alloc(l);
            assert!(inside(&a, q));
            q.write_bytes(7, N - 64);
            let q2 = a.realloc(q, l, 2 * N);
            assert!(!inside(&a, q2));
            assert!((0..N - 64).all(|i| *q2.add(i) == 7));
            // the block gave the moved range back (it was the last)
            assert_eq!(a.top.load(Ordering::Relaxed), q as usize - a.base());
            let q3 = a.realloc(q2, lay(2 * N, 8), 3 * N);
            assert!(!q3.is_null() && !inside(&a, q3));
            a.dealloc(q3, lay(3 * N, 8));

            // used up: the rest comes from the system
            let fill = lay(N - 64, 1);
            let f = a.alloc(fill);
            assert!(inside(&a, f));
            let s = a.alloc(lay(128, 8));
            assert!(!s.is_null() && !inside(&a, s));
            a.dealloc(s, lay(128, 8));
        }
    }

    #[test]
    fn zeroed_allocations_are_zero_where_the_block_was_used_before() {
        let a = arena();
        // SAFETY: non-zero sizes; each pointer freed once with its layout.
        unsafe {
            let l = lay(5000, 8);
            let p = a.alloc(l);
            p.write_bytes(0xff, 5000);
            let q = a.realloc(p, l, 6000);
            assert_eq!(q, p);
            q.write_bytes(0xee, 6000);
            a.dealloc(q, lay(6000, 8));
            let z = a.alloc_zeroed(lay(8000, 8));
            assert_eq!(z, p);
            assert!((0..8000).all(|i| *z.add(i) == 0));
            a.dealloc(z, lay(8000, 8));
        }
    }

    #[test]
    fn threads_get_disjoint_ranges() {
        let a: &'static Arena<N> = Box::leak(arena());
        let l = lay(24, 8);
        let hands: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..200 {
                        // SAFETY: non-zero size; the range is this thread's alone.
                        let p = unsafe { a.alloc(l) };
                        // SAFETY: 24 bytes were just allocated at `p`.
                        unsafe { p.write_bytes(t, 24) };
                        got.push(p as usize);
                    }
                    std::thread::yield_now();
                    // SAFETY: the bytes written above, still allocated.
                    assert!(got.iter().all(|&p| (0..24).all(|i| unsafe { *(p as *const u8).add(i) } == t)));
                    got
                })
            })
            .collect();
        let mut all: Vec<usize> = hands.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[1] - w[0] >= 24), "overlapping ranges");
    }
}
