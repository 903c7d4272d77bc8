//! The server's memory budget, in allocated bytes: push buffers (their capacities) and
//! blocks handed to the disk but not yet written. Above the high watermark pushes
//! write out their largest buffers; at the limit they stop reading from the network
//! (QUIC flow control then holds the clients back) until usage falls below the low
//! watermark.

use std::sync::atomic::{AtomicU64, Ordering};

/// High watermark, as a fraction of the limit.
pub const HIGH_WATERMARK: f64 = 0.75;
/// Low watermark (where stopped pushes resume), as a fraction of the limit.
pub const LOW_WATERMARK: f64 = 0.5;

#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    high: u64,
    low: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            high: (limit as f64 * HIGH_WATERMARK) as u64,
            low: (limit as f64 * LOW_WATERMARK) as u64,
            used: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn charge(&self, n: u64) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    pub fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Moves a holder's charge from `from` to `to` bytes.
    pub fn recharge(&self, from: u64, to: u64) {
        if to > from {
            self.charge(to - from);
        } else {
            self.release(from - to);
        }
    }

    /// Above the high watermark: buffers should be written out.
    pub fn above_high(&self) -> bool {
        self.used() > self.high
    }

    /// At the limit: stop taking in data.
    pub fn exhausted(&self) -> bool {
        self.used() >= self.limit
    }

    /// Below the low watermark: stopped pushes may resume.
    pub fn below_low(&self) -> bool {
        self.used() < self.low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks() {
        let b = MemoryBudget::new(1000);
        b.charge(700);
        assert!(!b.above_high() && !b.exhausted() && !b.below_low());
        b.recharge(700, 1000);
        assert!(b.above_high() && b.exhausted());
        b.release(600);
        assert!(b.below_low());
        b.release(10_000);
        assert_eq!(b.used(), 0);
    }
}
