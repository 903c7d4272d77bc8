//! How written bytes reach the disk: the plain-syscall backend here, io_uring in
//! `uring.rs`. Both run the same store and the same tests. Reads and fdatasync are not
//! a backend's: their callers wait for them, so the store runs them on its own thread
//! (see `uring.rs` for why the ring would only slow them).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::direct::WriteBuf;

/// Called once a write has completed (or failed).
pub type WriteDone = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Which backend a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Syscall,
    IoUring,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Syscall => "syscall",
            Self::IoUring => "io_uring",
        }
    }
}

/// Positional file writes. They may complete out of order and on another thread;
/// `done` is called exactly once per write.
pub trait IoBackend: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> BackendKind;
    /// Writes all of `data` at `offset` of `file`.
    fn write(&self, file: Arc<File>, offset: u64, data: WriteBuf, done: WriteDone);
}

/// `pwrite` on the calling thread.
#[derive(Debug, Default)]
pub struct SyscallBackend;

impl IoBackend for SyscallBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Syscall
    }

    fn write(&self, file: Arc<File>, offset: u64, data: WriteBuf, done: WriteDone) {
        done(file.write_all_at(data.as_slice(), offset));
    }
}
