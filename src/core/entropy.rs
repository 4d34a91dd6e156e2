//! Randomness, injected: every secret the core makes (TOTP secrets, backup codes, salts, nonces)
//! comes from an [`Entropy`] it was given. Production uses the OS CSPRNG; tests use a seeded
//! ChaCha20 stream so screens and stores are reproducible (only under `cfg(test)` or the
//! `test-support` feature). Must never fall back to a weak source.

use rand::TryRng;
use rand::rngs::SysRng;
#[cfg(any(test, feature = "test-support"))]
use rand::{Rng, SeedableRng, rngs::ChaCha20Rng};

/// A source of cryptographically secure random bytes.
pub trait Entropy: Send {
    fn fill(&mut self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (getrandom).
#[derive(Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        // getrandom fails only when the kernel cannot supply entropy at all; continuing with
        // predictable secrets would be worse than stopping.
        SysRng
            .try_fill_bytes(buf)
            .expect("the operating system's random number generator failed");
    }
}

/// A deterministic ChaCha20 stream for tests and snapshot runs. Never use it for real secrets.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct SeededEntropy(ChaCha20Rng);

#[cfg(any(test, feature = "test-support"))]
impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Entropy for SeededEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }
}

impl<E: Entropy + ?Sized> Entropy for Box<E> {
    fn fill(&mut self, buf: &mut [u8]) {
        (**self).fill(buf)
    }
}
