//! Native objects Java refers to by a `long`: ids into a table rather than raw
//! pointers, so a stale or forged handle is an error, never undefined behaviour.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::BridgeError;

pub struct Handles<T> {
    kind: &'static str,
    next: AtomicI64,
    live: Mutex<HashMap<i64, Arc<Mutex<T>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T> Handles<T> {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            next: AtomicI64::new(1),
            live: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, value: T) -> i64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(id, Arc::new(Mutex::new(value)));
        id
    }

    fn get(&self, handle: i64) -> Result<Arc<Mutex<T>>, BridgeError> {
        lock(&self.live)
            .get(&handle)
            .cloned()
            .ok_or(BridgeError::NoSuchHandle {
                kind: self.kind,
                handle,
            })
    }

    /// Runs `f` on the object (one caller at a time per object).
    pub fn with<R>(
        &self,
        handle: i64,
        f: impl FnOnce(&mut T) -> Result<R, BridgeError>,
    ) -> Result<R, BridgeError> {
        let obj = self.get(handle)?;
        let mut guard = lock(&obj);
        f(&mut guard)
    }

    /// Forgets the handle; the object is dropped once no call is using it. Returns
    /// whether the handle was live.
    pub fn remove(&self, handle: i64) -> bool {
        lock(&self.live).remove(&handle).is_some()
    }
}
