//! What one connection may make the server hold, counted and bounded.
//!
//! - *Frames being read*: a frame's whole length is reserved before its body is read,
//!   from the connection's frame allowance (`limits.max_frame_size` bytes, first come
//!   first served), so however many streams a client opens, the frames it has in
//!   flight never exceed one maximum frame. The reservation is held until the frame's
//!   bytes are released (a pushed batch: once it is split).
//! - *Request state*: the per-partition tables of its open pushes and the read-ahead of
//!   its fetches, from `limits.connection_memory`. A push whose tables do not fit is
//!   refused (`LimitExceeded`); a fetch waits for room.
//!
//! Everything is also charged to the server's memory budget while held, so pushes write
//! out their buffers sooner under such load. The budget itself never makes these wait:
//! what bounds them is the allowance, per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_spill::MemoryBudget;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RequestError;

#[derive(Debug)]
pub(crate) struct ConnectionAllowance {
    frames: Arc<Semaphore>,
    state: AtomicU64,
    state_limit: u64,
    memory: Arc<MemoryBudget>,
}

/// A frame's bytes, reserved until dropped.
#[derive(Debug)]
pub(crate) struct FrameCharge {
    _permit: Option<OwnedSemaphorePermit>,
    memory: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for FrameCharge {
    fn drop(&mut self) {
        self.memory.release(self.bytes);
    }
}

/// Bytes of request state held against a connection's allowance until dropped.
#[derive(Debug)]
pub(crate) struct StateCharge {
    allowance: Arc<ConnectionAllowance>,
    bytes: u64,
}

impl Drop for StateCharge {
    fn drop(&mut self) {
        self.allowance.state.fetch_sub(self.bytes, Ordering::AcqRel);
        self.allowance.memory.release(self.bytes);
    }
}

impl ConnectionAllowance {
    pub fn new(frame_bytes: u32, state_bytes: u64, memory: Arc<MemoryBudget>) -> Arc<Self> {
        Arc::new(Self {
            frames: Arc::new(Semaphore::new(frame_bytes as usize)),
            state: AtomicU64::new(0),
            state_limit: state_bytes,
            memory,
        })
    }

    /// Reserves a frame of `len` bytes, waiting for the connection's earlier frames to
    /// be released if they leave no room. `len` was checked against the frame limit,
    /// which is the allowance's size, so it always fits eventually.
    pub async fn reserve_frame(&self, len: u32) -> FrameCharge {
        let permit = match len {
            0 => None,
            n => self.frames.clone().acquire_many_owned(n).await.ok(),
        };
        self.memory.charge(u64::from(len));
        FrameCharge {
            _permit: permit,
            memory: self.memory.clone(),
            bytes: u64::from(len),
        }
    }

    /// Holds `bytes` of request state if they fit in the connection's allowance.
    pub fn try_hold(self: &Arc<Self>, bytes: u64, what: &str) -> Result<StateCharge, RequestError> {
        let fits = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&u| u <= self.state_limit)
            });
        match fits {
            Ok(_) => {
                self.memory.charge(bytes);
                Ok(StateCharge {
                    allowance: self.clone(),
                    bytes,
                })
            }
            Err(used) => Err(RequestError::Limit(format!(
                "{what} needs {bytes} bytes; this connection's requests hold {used} bytes of \
                 limits.connection_memory = {}",
                self.state_limit
            ))),
        }
    }

    /// Holds `bytes` of request state, waiting until they fit (at most the whole
    /// allowance is asked for, so a request alone on its connection never waits).
    pub async fn hold(self: &Arc<Self>, bytes: u64) -> StateCharge {
        let bytes = bytes.min(self.state_limit);
        loop {
            if let Ok(charge) = self.try_hold(bytes, "") {
                return charge;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Bytes of request state held now.
    #[cfg(test)]
    pub fn state_bytes(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_wait_for_room_and_everything_is_charged_while_held() {
        let memory = Arc::new(MemoryBudget::new(1 << 30));
        let allowance = ConnectionAllowance::new(100, 1000, memory.clone());
        let a = allowance.reserve_frame(60).await;
        assert_eq!(memory.used(), 60);
        let waiting = {
            let allowance = allowance.clone();
            tokio::spawn(async move { allowance.reserve_frame(50).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a frame past the allowance waits");
        drop(a);
        let b = waiting.await.unwrap();
        assert_eq!(memory.used(), 50);
        drop(b);

        let held = allowance.try_hold(800, "a push").unwrap();
        let err = allowance.try_hold(300, "a push").unwrap_err();
        assert!(err.to_string().contains("hold 800 bytes of"), "{err}");
        assert_eq!((allowance.state_bytes(), memory.used()), (800, 800));
        drop(held);
        assert_eq!((allowance.state_bytes(), memory.used()), (0, 0));
        let all = allowance.hold(5000).await;
        assert_eq!(allowance.state_bytes(), 1000);
        drop(all);
    }
}
