//! Disk quotas: bytes reserved before a block is written, released when its shuffle is
//! deleted. A quota may have a parent (an application's quota inside the server's), and
//! a reservation must fit in both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::SpillError;

#[derive(Debug)]
pub struct DiskQuota {
    scope: &'static str,
    limit: u64,
    used: AtomicU64,
    parent: Option<Arc<DiskQuota>>,
}

impl DiskQuota {
    /// A top-level quota; `None` is unlimited.
    pub fn new(scope: &'static str, limit: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            scope,
            limit: limit.unwrap_or(u64::MAX),
            used: AtomicU64::new(0),
            parent: None,
        })
    }

    /// A quota inside this one.
    pub fn child(self: &Arc<Self>, scope: &'static str, limit: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            scope,
            limit: limit.unwrap_or(u64::MAX),
            used: AtomicU64::new(0),
            parent: Some(self.clone()),
        })
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> Option<u64> {
        (self.limit != u64::MAX).then_some(self.limit)
    }

    /// Reserves `n` bytes here and in every parent, or nothing.
    pub fn try_reserve(&self, n: u64) -> Result<(), SpillError> {
        let fits = |used: u64| used.checked_add(n).filter(|&u| u <= self.limit);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fits)
            .map_err(|used| SpillError::QuotaExceeded {
                scope: self.scope,
                limit: self.limit,
                used,
                requested: n,
            })?;
        if let Some(parent) = &self.parent {
            if let Err(e) = parent.try_reserve(n) {
                self.used.fetch_sub(n, Ordering::AcqRel);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Counts bytes found on disk at recovery (may exceed the limit).
    pub fn force_reserve(&self, n: u64) {
        self.used.fetch_add(n, Ordering::AcqRel);
        if let Some(parent) = &self.parent {
            parent.force_reserve(n);
        }
    }

    pub fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
        if let Some(parent) = &self.parent {
            parent.release(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_fits_child_and_parent_or_changes_nothing() {
        let server = DiskQuota::new("server", Some(100));
        let a = server.child("application", Some(60));
        let b = server.child("application", None);
        a.try_reserve(50).unwrap();
        let err = a.try_reserve(20).unwrap_err();
        assert!(matches!(
            err,
            SpillError::QuotaExceeded {
                scope: "application",
                limit: 60,
                used: 50,
                requested: 20
            }
        ));
        b.try_reserve(40).unwrap();
        let err = b.try_reserve(20).unwrap_err();
        assert!(matches!(
            err,
            SpillError::QuotaExceeded {
                scope: "server",
                ..
            }
        ));
        assert_eq!((a.used(), b.used(), server.used()), (50, 40, 90));
        a.release(50);
        b.try_reserve(20).unwrap();
        assert_eq!((a.used(), b.used(), server.used()), (0, 60, 60));
    }
}
