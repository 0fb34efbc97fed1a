//! Randomness behind a trait (STYLE.md rule 2): the filters seed it from the
//! host's `random_get` (seeded by the harness, so weighted picks are exact in
//! tests); core tests use a fixed seed.

/// A source of uniformly distributed integers.
pub trait Rng {
    /// A uniform integer in `0..bound` (`0` when `bound` is 0).
    fn below(&mut self, bound: u32) -> u32;
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, statistically sound for
/// traffic splitting; not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Rng for SplitMix64 {
    fn below(&mut self, bound: u32) -> u32 {
        if bound == 0 {
            return 0;
        }
        // Lemire's multiply-shift: unbiased enough for bounds ≤ 2^32 with a
        // 64-bit draw (bias < 2^-32).
        let wide = u128::from(self.next_u64() >> 32) * u128::from(bound);
        u32::try_from(wide >> 32).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_below_the_bound_and_cover_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let d = rng.below(10) as usize;
            seen[d] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }
}
