//! One sort for every element type. std's sorts (driftsort, ipnsort) are
//! compiled anew for each element type and order, 2-5 KB each in the
//! stable build: 30 KB for cnibox's dozen sorts. The tiny build's std is
//! built for size and sorts by heapsort already, still one copy per type.
//! Here a heapsort reaches the elements through one callback, so its code
//! is in the binary once; what each sort adds is a small closure. cnibox
//! sorts short lists, and ipam state of at most a range's addresses, where
//! O(n log n) without extra memory is all that matters.

/// Heapsort of elements 0..n, which `op` compares (`op(i, j, false)`:
/// element i orders before element j) and swaps (`op(i, j, true)`).
#[inline(never)]
fn heapsort(n: usize, op: &mut dyn FnMut(usize, usize, bool) -> bool) {
    fn sift(op: &mut dyn FnMut(usize, usize, bool) -> bool, mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && op(child, child + 1, false) {
                child += 1;
            }
            if !op(root, child, false) {
                return;
            }
            op(root, child, true);
            root = child;
        }
    }
    for i in (0..n / 2).rev() {
        sift(op, i, n);
    }
    for end in (1..n).rev() {
        op(0, end, true);
        sift(op, 0, end);
    }
}

/// Sort `v` so that `less` holds between no later element and an earlier
/// one. Not stable: equal elements end in any order.
pub fn sort_by<T>(v: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    heapsort(v.len(), &mut |i, j, swap| {
        if swap {
            v.swap(i, j);
            false
        } else {
            less(&v[i], &v[j])
        }
    });
}

/// Sort `v` in ascending order (not stable).
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, |a, b| a < b);
}

/// Sort `v` by ascending `key` (not stable).
pub fn sort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    sort_by(v, |a, b| key(a) < key(b));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_std() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [0usize, 1, 2, 3, 7, 8, 64, 1000, 4097] {
            let mut v: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % (n as u64 / 2 + 1)
                })
                .collect();
            let mut want = v.clone();
            want.sort_unstable();
            sort(&mut v);
            assert_eq!(v, want, "n = {n}");
            sort_by_key(&mut v, |&e| std::cmp::Reverse(e));
            want.reverse();
            assert_eq!(v, want, "n = {n}, reversed");
        }
        let mut s = vec!["b".to_string(), "a".into(), "c".into(), "a".into()];
        sort(&mut s);
        assert_eq!(s, ["a", "a", "b", "c"]);
    }
}
