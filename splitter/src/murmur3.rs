//! Spark's Murmur3 x86_32 (`org.apache.spark.unsafe.hash.Murmur3_x86_32`), bit for bit,
//! including its treatment of trailing bytes (each one mixed as a sign-extended int),
//! which differs from the reference Murmur3.

/// Seed of Spark's `hash()` expression and of `HashPartitioning`.
pub const SPARK_SEED: i32 = 42;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix_k1(k1: u32) -> u32 {
    k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

#[inline(always)]
fn mix_h1(h1: u32, k1: u32) -> u32 {
    (h1 ^ k1)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(h1: u32, len: u32) -> u32 {
    let mut h = h1 ^ len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// `Murmur3_x86_32.hashInt`.
#[inline(always)]
pub fn hash_int(value: i32, seed: i32) -> i32 {
    fmix(mix_h1(seed as u32, mix_k1(value as u32)), 4) as i32
}

/// `Murmur3_x86_32.hashLong`: low word first, then high word.
#[inline(always)]
pub fn hash_long(value: i64, seed: i32) -> i32 {
    let low = value as u32;
    let high = (value as u64 >> 32) as u32;
    let h1 = mix_h1(seed as u32, mix_k1(low));
    fmix(mix_h1(h1, mix_k1(high)), 8) as i32
}

/// `Murmur3_x86_32.hashUnsafeBytes`: 4-byte little-endian words, then each trailing
/// byte as a sign-extended int.
#[inline]
pub fn hash_bytes(bytes: &[u8], seed: i32) -> i32 {
    let mut h1 = seed as u32;
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        h1 = mix_h1(h1, mix_k1(u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    }
    for &b in words.remainder() {
        h1 = mix_h1(h1, mix_k1(b as i8 as i32 as u32));
    }
    fmix(h1, bytes.len() as u32) as i32
}

/// Spark's `pmod(hash, n)`: the non-negative remainder.
#[inline(always)]
pub fn pmod(hash: i32, n: u32) -> u32 {
    (hash as i64).rem_euclid(n as i64) as u32
}

/// `pmod` by a fixed divisor without a division per row, in 32×32→64-bit multiplies
/// that vectorize (Granlund–Montgomery). A negative hash is folded onto a 31-bit value
/// first (`!h`), for which a 32-bit magic number is always exact.
#[derive(Debug, Clone, Copy)]
pub struct Pmod {
    n: u32,
    magic: u32,
    shift: u32,
}

impl Pmod {
    pub fn new(n: u32) -> Self {
        assert!(n > 0, "pmod by zero");
        // l = ceil(log2 n); magic = ceil(2^(31 + l) / n) < 2^32 because n > 2^(l - 1),
        // and magic * n - 2^(31 + l) < n <= 2^l makes the quotient exact below 2^31.
        let l = 32 - (n - 1).leading_zeros();
        let shift = 31 + l;
        let magic = (1u64 << shift).div_ceil(n as u64);
        Self {
            n,
            magic: u32::try_from(magic).expect("magic fits 32 bits"),
            shift,
        }
    }

    #[inline(always)]
    pub fn apply(self, hash: i32) -> u32 {
        let negative = hash >> 31; // 0 or -1
        let x = (hash ^ negative) as u32; // h, or !h = |h| - 1 for a negative h
        let q = ((x as u64 * self.magic as u64) >> self.shift) as u32;
        let r = x - q * self.n;
        // For h < 0: pmod(h, n) = n - 1 - (!h mod n).
        if negative != 0 {
            self.n - 1 - r
        } else {
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastmod_equals_pmod() {
        let hashes = [
            0,
            1,
            -1,
            41,
            -41,
            i32::MAX,
            i32::MIN,
            i32::MIN + 1,
            123_456_789,
            -987_654_321,
        ];
        for n in [
            1,
            2,
            3,
            7,
            16,
            200,
            1000,
            2000,
            20_000,
            65_537,
            1 << 20,
            u32::MAX / 3,
            u32::MAX,
        ] {
            let fast = Pmod::new(n);
            for h in hashes.into_iter().chain((0..2000).map(|i| hash_int(i, 42))) {
                assert_eq!(fast.apply(h), pmod(h, n), "hash {h}, n {n}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fastmod_equals_pmod_anywhere(h: i32, n in 1u32..) {
            proptest::prop_assert_eq!(Pmod::new(n).apply(h), pmod(h, n));
        }
    }

    #[test]
    fn pmod_is_non_negative() {
        assert_eq!(pmod(-1, 7), 6);
        assert_eq!(
            pmod(i32::MIN, 200),
            (i32::MIN as i64).rem_euclid(200) as u32
        );
        assert_eq!(pmod(13, 1), 0);
    }
}
