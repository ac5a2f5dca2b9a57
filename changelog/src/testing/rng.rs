//! [`Rng`]: a small seeded PRNG (splitmix64).

/// A small, deterministic, seeded PRNG (splitmix64): the same seed gives
/// the same sequence on every platform, so a failing seed replays.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index in `0..n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        let n_u64 = u64::try_from(n).unwrap_or(u64::MAX);
        usize::try_from(self.below(n_u64)).unwrap_or(0)
    }

    /// A number in `low..=high` (`low` when `high < low`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low).saturating_add(1))
    }

    /// True with probability `percent`%.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// How a simulated power loss treats unsynced data: keep none
    /// ([`DropAll`](crate::fs::CrashMode::DropAll)) or all
    /// ([`KeepAll`](crate::fs::CrashMode::KeepAll)), each one time in
    /// `one_in`; otherwise a random part
    /// ([`Random`](crate::fs::CrashMode::Random)).
    pub fn crash_mode(&mut self, one_in: u64) -> crate::fs::CrashMode {
        match self.below(one_in) {
            0 => crate::fs::CrashMode::DropAll,
            1 => crate::fs::CrashMode::KeepAll,
            _ => crate::fs::CrashMode::Random,
        }
    }

    /// True or false, evenly.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.fill(&mut buf);
        buf
    }

    /// A skewed size in `0..=max`: mostly small, sometimes up to `max`
    /// (each bit length is equally likely), as value sizes are in practice.
    pub fn size(&mut self, max: u64) -> usize {
        let bits = self.below(64 - u64::from(max.leading_zeros()) + 1);
        let size = self.below(1u64.checked_shl(bits as u32).unwrap_or(u64::MAX));
        usize::try_from(size.min(max)).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(7);
        assert!(a.iter().all(|&x| x == r.next_u64()));
    }

    #[test]
    fn draws_stay_in_their_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            assert!(r.index(3) < 3);
            assert!((5..=9).contains(&r.range(5, 9)));
            assert!(r.size(1000) <= 1000);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.bytes(13).len(), 13);
    }
}
