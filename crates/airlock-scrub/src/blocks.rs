//! Byte-class bitmaps of 64-byte blocks, for the anchor pass.
//!
//! The anchor pass looks for digits, `:` and `@` and walks runs of digits
//! and separators. Testing byte by byte costs a few nanoseconds a byte on
//! text where an anchor turns up every ~20 bytes (logs, JSON), so the pass
//! reads one bitmap per class per 64-byte block instead and moves with bit
//! operations: the next anchor is the lowest set bit, a run's end is the
//! lowest clear bit of digits-or-separators, its digit count a popcount.
//! On x86-64 a block's bitmaps take a few SSE2 comparisons and `pmovmskb`
//! (through `safe_arch`'s safe wrappers; this crate forbids `unsafe`);
//! elsewhere a scalar loop computes the same bits.

/// Bytes that continue a digit run (see `engine::classes`).
pub(crate) const SEPARATORS: &[u8; 7] = b" -.()/+";

/// Class bitmaps of one 64-byte block: bit `j` describes byte `64k + j`.
/// Bytes past the end of the haystack belong to no class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Block {
    pub digit: u64,
    pub sep: u64,
    pub colon: u64,
    pub at: u64,
}

/// The bitmaps of the block starting at `64 * k`.
pub(crate) fn block(hay: &[u8], k: usize) -> Block {
    let base = k.saturating_mul(64);
    match hay.get(base..base.saturating_add(64)) {
        Some(b) => masks(b.try_into().unwrap_or(&[0u8; 64])),
        None => {
            let mut b = [0u8; 64];
            if let Some(rest) = hay.get(base..) {
                b[..rest.len()].copy_from_slice(rest);
            }
            masks(&b)
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn masks(b: &[u8; 64]) -> Block {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i, sub_i8_m128i,
    };
    let splat = |c: u8| set_splat_i8_m128i(c as i8);
    let bits = |m| u64::from(move_mask_i8_m128i(m) as u32 as u16);
    let mut out = Block::default();
    for (k, lane) in b.chunks_exact(16).enumerate() {
        let Ok(lane) = <&[u8; 16]>::try_from(lane) else {
            continue;
        };
        let v = load_unaligned_m128i(lane);
        let eq = |c: u8| cmp_eq_mask_i8_m128i(v, splat(c));
        // A digit is a byte whose distance above '0' is at most 9 (unsigned).
        let t = sub_i8_m128i(v, splat(b'0'));
        let digit = cmp_eq_mask_i8_m128i(min_u8_m128i(t, splat(9)), t);
        let [s0, s1, s2, s3, s4, s5, s6] = SEPARATORS.map(eq);
        let sep = bitor_m128i(
            bitor_m128i(bitor_m128i(s0, s1), bitor_m128i(s2, s3)),
            bitor_m128i(bitor_m128i(s4, s5), s6),
        );
        let sh = 16 * k;
        out.digit |= bits(digit) << sh;
        out.sep |= bits(sep) << sh;
        out.colon |= bits(eq(b':')) << sh;
        out.at |= bits(eq(b'@')) << sh;
    }
    out
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn masks(b: &[u8; 64]) -> Block {
    scalar(b)
}

/// The same bitmaps, one byte at a time (the reference for the tests, and
/// the implementation where SSE2 is not available).
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn scalar(b: &[u8; 64]) -> Block {
    let mut out = Block::default();
    for (j, &x) in b.iter().enumerate() {
        out.digit |= u64::from(x.is_ascii_digit()) << j;
        out.sep |= u64::from(SEPARATORS.contains(&x)) << j;
        out.colon |= u64::from(x == b':') << j;
        out.at |= u64::from(x == b'@') << j;
    }
    out
}

/// A forward cursor over block bitmaps: computes each block once while the
/// caller moves (mostly) forward.
#[derive(Debug)]
pub(crate) struct Cursor<'h> {
    hay: &'h [u8],
    k: usize,
    cur: Block,
}

impl<'h> Cursor<'h> {
    pub(crate) fn new(hay: &'h [u8]) -> Cursor<'h> {
        Cursor {
            hay,
            k: 0,
            cur: block(hay, 0),
        }
    }

    /// The bitmaps of the block holding position `i`.
    #[inline]
    pub(crate) fn at(&mut self, i: usize) -> Block {
        let k = i / 64;
        if k != self.k {
            self.k = k;
            self.cur = block(self.hay, k);
        }
        self.cur
    }

    /// The first position `>= i` whose byte is in one of the classes
    /// `pick` selects, or `hay.len()`.
    #[inline]
    pub(crate) fn next(&mut self, mut i: usize, pick: impl Fn(&Block) -> u64) -> usize {
        let len = self.hay.len();
        while i < len {
            let m = pick(&self.at(i)) & (!0u64 << (i % 64));
            if m != 0 {
                return (i & !63) + m.trailing_zeros() as usize;
            }
            i = (i & !63) + 64;
        }
        len
    }

    /// The number of positions in `a..b` whose byte is in the classes
    /// `pick` selects.
    #[inline]
    pub(crate) fn count(&mut self, a: usize, b: usize, pick: impl Fn(&Block) -> u64) -> usize {
        let mut n = 0;
        let mut i = a;
        while i < b {
            let base = i & !63;
            let hi = (b - base).min(64);
            let span = if hi == 64 { !0u64 } else { (1u64 << hi) - 1 };
            let m = pick(&self.at(i)) & (!0u64 << (i % 64)) & span;
            n += m.count_ones() as usize;
            i = base + 64;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn interesting() -> impl Strategy<Value = Vec<u8>> {
        // Every class, their neighbours in the byte order, and any byte.
        let pick = prop_oneof![
            4 => proptest::sample::select(b"0123456789 -.()/+:@/;?*,'ABaz\x00\x80\xb0\xff".to_vec()),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(pick, 0..300)
    }

    #[test]
    fn every_byte_value_gets_its_class() {
        let all: Vec<u8> = (0..=255u8).collect();
        for k in 0..4 {
            let b: &[u8; 64] = all[64 * k..64 * k + 64].try_into().unwrap();
            assert_eq!(masks(b), scalar(b), "block {k}");
        }
    }

    proptest! {
        #[test]
        fn blocks_match_the_scalar_classes(hay in interesting()) {
            for k in 0..hay.len().div_ceil(64) + 1 {
                let mut b = [0u8; 64];
                for (j, slot) in b.iter_mut().enumerate() {
                    *slot = hay.get(64 * k + j).copied().unwrap_or(0);
                }
                prop_assert_eq!(block(&hay, k), scalar(&b));
            }
        }

        #[test]
        fn cursor_finds_and_counts_like_a_byte_loop(hay in interesting(), a in 0usize..320, n in 0usize..320) {
            let mut c = Cursor::new(&hay);
            let is = |x: u8| x.is_ascii_digit() || x == b'@';
            let want = hay.iter().enumerate().skip(a).find(|(_, x)| is(**x)).map_or(hay.len(), |(i, _)| i);
            prop_assert_eq!(c.next(a, |b| b.digit | b.at), want.max(a.min(hay.len())));
            let b = (a + n).min(hay.len());
            let want = hay.get(a..b).map_or(0, |s| s.iter().filter(|x| x.is_ascii_digit()).count());
            prop_assert_eq!(c.count(a, b, |b| b.digit), want);
        }
    }
}
