//! Substring search over the state file's bytes, at memory speed.

/// First occurrence of `needle` in `hay`. This one scan is what ADD and DEL
/// pay per reservation held, so it must run near memory speed: musl's memmem
/// manages ~1.5 bytes/ns on a state file, which at 10,000 reservations is
/// more than the whole rest of an ADD.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if needle.len() >= 3 {
        return find_sse2(hay, needle);
    }
    // SAFETY: both pointers and lengths describe live slices; the result, when
    // not null, points into `hay`.
    let p = unsafe { libc::memmem(hay.as_ptr().cast(), hay.len(), needle.as_ptr().cast(), needle.len()) };
    (!p.is_null()).then(|| p as usize - hay.as_ptr() as usize)
}

/// Test two bytes of the needle (its second and its middle one: inside the
/// container id, where the file is most varied) at 16 positions at once and
/// compare in full only where both match (~18 bytes/ns here).
#[cfg(target_arch = "x86_64")]
fn find_sse2(hay: &[u8], needle: &[u8]) -> Option<usize> {
    use std::arch::x86_64::*;
    let (a, b) = (1, needle.len() / 2);
    let last = hay.len() - needle.len();
    let mut i = 0;
    // SAFETY: SSE2 is part of the x86_64 baseline. Each load reads 16 bytes at
    // i+a or i+b with i+15 <= last, so it ends at most at last+b+16 <=
    // hay.len() (a <= b < needle.len()).
    unsafe {
        // No closures or helpers here: the release build optimises for size and would not inline them.
        let (va, vb) = (_mm_set1_epi8(needle[a] as i8), _mm_set1_epi8(needle[b] as i8));
        while i + 15 <= last {
            let ha = _mm_cmpeq_epi8(_mm_loadu_si128(hay.as_ptr().add(i + a).cast()), va);
            let hb = _mm_cmpeq_epi8(_mm_loadu_si128(hay.as_ptr().add(i + b).cast()), vb);
            let mut m = _mm_movemask_epi8(_mm_and_si128(ha, hb)) as u32;
            while m != 0 {
                let k = i + m.trailing_zeros() as usize;
                if hay.get(k..k + needle.len()) == Some(needle) {
                    return Some(k);
                }
                m &= m - 1;
            }
            i += 16;
        }
    }
    (i..=last).find(|&k| hay.get(k..k + needle.len()) == Some(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_agrees_with_a_naive_search() {
        let mut x: u32 = 7;
        let hay: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                b"ab \n"[(x >> 16) as usize % 4]
            })
            .collect();
        for start in (0..4900).step_by(37) {
            for len in [1, 2, 3, 5, 16, 17, 40] {
                let n = &hay[start..start + len];
                let naive = hay.windows(len).position(|w| w == n);
                assert_eq!(find(&hay, n), naive, "{start} {len}");
                // and just past the end, near the end, and absent
                assert_eq!(find(&hay[..start + len - 1], n), hay[..start + len - 1].windows(len).position(|w| w == n));
            }
        }
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"xxabc", b"abc"), Some(2));
        assert_eq!(find(b"", b"a"), None);
    }
}
