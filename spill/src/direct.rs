//! Direct I/O: records written with `O_DIRECT` bypass the page cache, so a spill costs
//! one DMA instead of a copy into the cache plus writeback. The kernel requires the
//! file offset, the length and the memory address to be aligned; records are padded
//! to [`DIRECT_ALIGN`] and copied to an aligned buffer for the write.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Alignment of direct writes: offsets, lengths and buffer addresses (the page size,
/// a multiple of every common logical block size).
pub const DIRECT_ALIGN: usize = 4096;

/// `O_DIRECT` on Linux x86-64 and aarch64.
pub const O_DIRECT: i32 = 0o40000;

/// Bytes to skip from `ptr` to the next [`DIRECT_ALIGN`] boundary.
pub(crate) fn align_slack(ptr: *const u8) -> usize {
    (DIRECT_ALIGN - ptr.addr() % DIRECT_ALIGN) % DIRECT_ALIGN
}

/// Bytes handed to a backend for one write: `bytes[start..]` (the start skips the
/// slack that aligns an over-allocated buffer).
#[derive(Debug)]
pub struct WriteBuf {
    bytes: Vec<u8>,
    start: usize,
}

impl WriteBuf {
    pub(crate) fn from_parts(bytes: Vec<u8>, start: usize) -> Self {
        Self { bytes, start }
    }

    /// `data` copied to a [`DIRECT_ALIGN`]-aligned address, zero-padded to `len` bytes.
    pub fn aligned_copy(data: &[u8], len: usize) -> Self {
        debug_assert!(data.len() <= len && len.is_multiple_of(DIRECT_ALIGN));
        let mut bytes: Vec<u8> = Vec::with_capacity(len + DIRECT_ALIGN);
        let start = align_slack(bytes.as_ptr());
        // Within capacity: none of these reallocate, so the alignment holds.
        bytes.resize(start, 0);
        bytes.extend_from_slice(data);
        bytes.resize(start + len, 0);
        Self { bytes, start }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (what the memory budget is charged).
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Opens `path` (which exists) for direct writes; `None` where the file system does not
/// support `O_DIRECT` (tmpfs, some FUSE and overlay mounts).
pub fn open_direct(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .custom_flags(O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(22) => Ok(None), // EINVAL: not supported here
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_copy_is_aligned_padded_and_exact() {
        for n in [0usize, 1, 4095, 4096, 4097, 70_000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
            let len = n.max(1).next_multiple_of(DIRECT_ALIGN);
            let buf = WriteBuf::aligned_copy(&data, len);
            assert_eq!(buf.as_slice().as_ptr().addr() % DIRECT_ALIGN, 0, "n = {n}");
            assert_eq!(buf.len(), len);
            assert_eq!(&buf.as_slice()[..n], &data[..]);
            assert!(buf.as_slice()[n..].iter().all(|&b| b == 0));
        }
    }
}
