//! Live counts of connections, streams and pushes, and the draining flag: read by the
//! limits, the drain on SIGTERM, `/status` and the gauges.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub connections: Counter,
    /// Connections that have not yet shown the token (handshakes included).
    pub pending: Counter,
    pub streams: Counter,
    pub pushes: Counter,
    draining: AtomicBool,
}

/// A count of things in progress; each holds an [`Active`] guard.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counter(Arc<AtomicUsize>);

/// Counts one thing in progress until dropped.
#[derive(Debug)]
pub(crate) struct Active(Arc<AtomicUsize>);

impl Counter {
    pub fn enter(&self) -> Active {
        self.enter_counted().0
    }

    /// Like [`enter`](Self::enter), also returning the count including this one.
    pub fn enter_counted(&self) -> (Active, usize) {
        let before = self.0.fetch_add(1, Ordering::SeqCst);
        (Active(self.0.clone()), before + 1)
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
