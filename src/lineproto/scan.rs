//! Byte searches for the parser's hot loops, 16 bytes at a time with SSE2 on
//! x86_64 (part of its baseline, so always there) and a plain loop elsewhere
//! and for the tail.
//!
//! Each returns the index of the first match in `hay[from..to]`, or `to`.

/// The first `needle`.
#[inline]
pub(crate) fn find_byte(hay: &[u8], from: usize, to: usize, needle: u8) -> usize {
    find_any(hay, from, to, [needle; 4])
}

/// The first byte equal to any of `set` (repeat a byte to look for fewer).
#[inline]
pub(crate) fn find_any(hay: &[u8], from: usize, to: usize, set: [u8; 4]) -> usize {
    assert!(from <= to && to <= hay.len());
    #[allow(unused_mut)]
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is always present on x86_64. Every load reads the 16
        // bytes `hay[i..i + 16]`, and `i + 16 <= to <= hay.len()` (checked
        // above and by the loop condition); unaligned loads are allowed.
        unsafe {
            let [a, b, c, d] = set.map(|byte| _mm_set1_epi8(byte as i8));
            while i + 16 <= to {
                let chunk = _mm_loadu_si128(hay.as_ptr().add(i).cast::<__m128i>());
                let hits = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(chunk, a), _mm_cmpeq_epi8(chunk, b)),
                    _mm_or_si128(_mm_cmpeq_epi8(chunk, c), _mm_cmpeq_epi8(chunk, d)),
                );
                let mask = _mm_movemask_epi8(hits);
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    hay[i..to]
        .iter()
        .position(|b| set.contains(b))
        .map_or(to, |p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8], from: usize, to: usize, set: [u8; 4]) -> usize {
        (from..to).find(|&i| set.contains(&hay[i])).unwrap_or(to)
    }

    #[test]
    fn agrees_with_a_plain_loop() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 80) as usize;
            let hay: Vec<u8> = (0..len)
                .map(|i| b"ab ,=\\\n\xff"[((x >> (i % 61)) % 8) as usize])
                .collect();
            let from = (x >> 8) as usize % (len + 1);
            let to = from + (x >> 16) as usize % (len - from + 1);
            for set in [*b",= \\", [b'\n'; 4], *b", \\\\", [0xff; 4]] {
                assert_eq!(
                    find_any(&hay, from, to, set),
                    naive(&hay, from, to, set),
                    "{hay:?} {from} {to} {set:?}"
                );
            }
            assert_eq!(
                find_byte(&hay, from, to, b' '),
                naive(&hay, from, to, [b' '; 4])
            );
        }
    }
}
