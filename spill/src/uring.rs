//! The io_uring backend: one ring owned by a dedicated thread. Callers hand it writes
//! (many in flight at once, across files); each write's completion runs its callback on
//! the ring thread, which is where a block becomes visible in its index.
//!
//! Reads and syncs do not go through the ring (the store runs them itself): their
//! callers wait for them, so the ring would only add two thread hand-offs to each
//! (caller to ring thread and back). On a busy host each hand-off waits for a core,
//! which made a small fetch's first block take 4-8 ms instead of 0.3 (ARCHITECTURE.md,
//! decision 11, "Backends").

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use io_uring::{opcode, types, IoUring};

use crate::backend::{BackendKind, IoBackend, WriteDone};
use crate::direct::WriteBuf;

/// Ring settings.
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries: the most operations in flight at once.
    pub entries: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self { entries: 256 }
    }
}

/// A write in flight: `data` goes to `offset` of `file`.
struct Op {
    file: Arc<File>,
    offset: u64,
    data: WriteBuf,
    /// Bytes already written (a short write is resubmitted for the rest).
    done_len: usize,
    done: WriteDone,
}

impl Op {
    fn fail(self, e: io::Error) {
        run_callback(self.done, Err(e));
    }

    fn entry(&mut self, user_data: u64) -> io_uring::squeue::Entry {
        let rest = &self.data.as_slice()[self.done_len..];
        opcode::Write::new(
            types::Fd(self.file.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .offset(self.offset + self.done_len as u64)
        .build()
        .user_data(user_data)
    }

    /// Applies a completion result; returns the op if it must be resubmitted.
    fn complete(mut self, result: i32) -> Option<Op> {
        if result < 0 {
            self.fail(io::Error::from_raw_os_error(-result));
            return None;
        }
        let n = result as usize;
        self.done_len += n;
        if n == 0 {
            run_callback(self.done, Err(io::ErrorKind::WriteZero.into()));
        } else if self.done_len < self.data.len() {
            return Some(self);
        } else {
            run_callback(self.done, Ok(()));
        }
        None
    }
}

fn run_callback(done: WriteDone, result: io::Result<()>) {
    if catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
        tracing::error!("a write completion callback panicked");
    }
}

/// A running ring; dropping it finishes the operations in flight and stops the thread.
#[derive(Debug)]
pub struct UringBackend {
    ops: Option<Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

impl UringBackend {
    /// Sets up a ring, or says why it cannot (kernel too old, io_uring disabled by
    /// seccomp or sysctl).
    pub fn start(config: UringConfig) -> io::Result<Self> {
        let ring = IoUring::new(config.entries)?;
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("sluice-uring".into())
            .spawn(move || ring_loop(ring, rx, config.entries as usize))?;
        Ok(Self {
            ops: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, op: Op) {
        let stopped = || io::Error::other("the io_uring thread has stopped");
        match &self.ops {
            Some(tx) => {
                if let Err(e) = tx.send(op) {
                    e.into_inner().fail(stopped());
                }
            }
            None => op.fail(stopped()),
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        self.ops.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl IoBackend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn write(&self, file: Arc<File>, offset: u64, data: WriteBuf, done: WriteDone) {
        if data.len() > u32::MAX as usize {
            return done(Err(io::Error::other("write larger than 4 GiB")));
        }
        self.send(Op {
            file,
            offset,
            data,
            done_len: 0,
            done,
        });
    }
}

/// Owns the ring: submits queued operations (at most `depth` in flight), waits for
/// completions, resubmits short transfers. Ends once the sender is gone and nothing
/// is in flight.
fn ring_loop(mut ring: IoUring, rx: Receiver<Op>, depth: usize) {
    let mut slots: Vec<Option<Op>> = Vec::with_capacity(depth);
    let mut free: Vec<usize> = Vec::new();
    let mut queued: VecDeque<Op> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut open = true;
    loop {
        if in_flight == 0 && queued.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(op) => queued.push_back(op),
                Err(_) => {
                    open = false;
                    continue;
                }
            }
        }
        while open && queued.len() < depth {
            match rx.try_recv() {
                Ok(op) => queued.push_back(op),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        while in_flight < depth {
            let Some(mut op) = queued.pop_front() else {
                break;
            };
            let slot = free.pop().unwrap_or_else(|| {
                slots.push(None);
                slots.len() - 1
            });
            let entry = op.entry(slot as u64);
            slots[slot] = Some(op);
            // SAFETY: the entry points into the buffer and file of the op stored in
            // `slots[slot]`, which stays there, unmoved (a Vec's heap buffer does not move
            // with the Vec) and open, until this slot's completion is reaped below.
            let pushed = unsafe { ring.submission().push(&entry) };
            if pushed.is_err() {
                // The queue is full even though fewer than `depth` are in flight: submit
                // what is queued first.
                queued.push_front(slots[slot].take().expect("just stored"));
                free.push(slot);
                break;
            }
            in_flight += 1;
        }
        if in_flight == 0 {
            continue;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(16) => {} // EBUSY: reap completions first
            Err(e) => {
                tracing::error!(error = %e, "io_uring submit failed");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let reaped: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (user_data, result) in reaped {
            let slot = user_data as usize;
            let Some(op) = slots.get_mut(slot).and_then(Option::take) else {
                tracing::error!(user_data, "io_uring completion for an unknown operation");
                continue;
            };
            free.push(slot);
            in_flight -= 1;
            if let Some(again) = op.complete(result) {
                queued.push_front(again);
            }
        }
    }
}
