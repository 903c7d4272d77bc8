//! How bytes reach the disk: the plain-syscall backend here, io_uring in `uring.rs`.
//! Both run the same store and the same tests.

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

/// Positional file I/O. Writes may complete out of order and on another thread;
/// `done` is called exactly once per write.
pub trait IoBackend: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> BackendKind;
    /// Writes all of `data` at `offset` of `file`.
    fn write(&self, file: Arc<File>, offset: u64, data: WriteBuf, done: WriteDone);
    /// Reads exactly `len` bytes at `offset`, on the calling thread.
    fn read(&self, file: &Arc<File>, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Makes the file's written data durable (`fdatasync`), on the calling thread.
    fn sync_data(&self, file: &Arc<File>) -> io::Result<()>;
}

/// Exactly `len` bytes at `offset` of `file`, read on the calling thread (`pread`).
pub(crate) fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// `pwrite`/`pread` on the calling thread.
#[derive(Debug, Default)]
pub struct SyscallBackend;

impl IoBackend for SyscallBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Syscall
    }

    fn write(&self, file: Arc<File>, offset: u64, data: WriteBuf, done: WriteDone) {
        done(file.write_all_at(data.as_slice(), offset));
    }

    fn read(&self, file: &Arc<File>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        read_at(file, offset, len)
    }

    fn sync_data(&self, file: &Arc<File>) -> io::Result<()> {
        file.sync_data()
    }
}
