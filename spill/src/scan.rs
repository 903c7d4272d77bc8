//! Recovery scan of a partition file: every intact record becomes an index entry.
//!
//! A record is intact when its prefix, block header and body checksums all hold. After
//! a damaged or never-written region (a crash mid-write, a failed write whose space
//! was already assigned) the scan probes every aligned position for the next intact
//! record, so one torn write never hides the records after it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sluice_format::{BlockView, DecodeLimits};

use crate::direct::DIRECT_ALIGN;
use crate::record::{parse_prefix, record_len, ALIGN, PREFIX_LEN};
use crate::{BlockEntry, SpillError};

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Intact blocks in file order.
    pub entries: Vec<BlockEntry>,
    /// End of the last intact record: what follows is a torn tail.
    pub valid_end: u64,
    /// Bytes before `valid_end` that belong to no intact record.
    pub skipped: u64,
}

/// Reads a file through a window of `WINDOW` bytes, refilled as the scan moves.
struct Window<'a> {
    file: &'a File,
    path: &'a Path,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

const WINDOW: usize = 4 << 20;

impl<'a> Window<'a> {
    /// `n` bytes at `at`, or `None` past the end of the file.
    fn get(&mut self, at: u64, n: usize) -> Result<Option<&[u8]>, SpillError> {
        if at + n as u64 > self.len {
            return Ok(None);
        }
        let loaded = self.start..self.start + self.buf.len() as u64;
        if at < loaded.start || at + n as u64 > loaded.end {
            let want = (self.len - at).min(n.max(WINDOW) as u64) as usize;
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, at)
                .map_err(|e| SpillError::io("read", self.path, e))?;
            self.start = at;
        }
        let from = (at - self.start) as usize;
        Ok(Some(&self.buf[from..from + n]))
    }
}

/// Where the next record may start after one ending at `end`: past the zeros that pad
/// a direct-I/O record to the next [`DIRECT_ALIGN`] boundary, if that is what follows.
fn skip_direct_padding(w: &mut Window<'_>, end: u64) -> Result<u64, SpillError> {
    let boundary = end.next_multiple_of(DIRECT_ALIGN as u64);
    if boundary == end {
        return Ok(end);
    }
    let zeros = w
        .get(end, (boundary - end) as usize)?
        .is_some_and(|pad| pad.iter().all(|&b| b == 0));
    Ok(if zeros { boundary } else { end })
}

/// Scans `file` (of `len` bytes) for intact records.
pub fn scan_file(
    file: &File,
    path: &Path,
    len: u64,
    limits: &DecodeLimits,
) -> Result<ScanResult, SpillError> {
    let max_block = limits.max_stored_len as u64 + sluice_format::HEADER_LEN as u64;
    let mut w = Window {
        file,
        path,
        len,
        start: 0,
        buf: Vec::new(),
    };
    let mut out = ScanResult::default();
    let mut at = 0u64;
    while at + PREFIX_LEN as u64 <= len {
        let prefix = w.get(at, PREFIX_LEN)?.and_then(parse_prefix);
        let entry = match prefix.filter(|p| p.block_len as u64 <= max_block) {
            Some(p) => {
                let block_at = at + PREFIX_LEN as u64;
                w.get(block_at, p.block_len as usize)?
                    .and_then(|block| BlockView::parse(block, limits).ok())
                    .filter(|view| view.header.block_len() == p.block_len as usize)
                    .map(|view| BlockEntry {
                        offset: block_at,
                        len: p.block_len,
                        map_id: view.header.map_id,
                        map_index: view.header.map_index,
                        attempt: view.header.attempt,
                        rows: view.header.rows,
                        epoch: p.epoch,
                    })
            }
            None => None,
        };
        match entry {
            Some(e) => {
                out.skipped += at - out.valid_end;
                at = skip_direct_padding(&mut w, at + record_len(e.len))?;
                out.valid_end = at.min(len);
                out.entries.push(e);
            }
            None => at += ALIGN,
        }
    }
    Ok(out)
}
