//! Small metadata files next to the data (an application's secret, a shuffle's shape):
//! magic, crc32c of the body, body. Written to a temporary name and renamed, so a crash
//! leaves the old file or the new one, never a torn one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sluice_spill::{sync_dir, SpillError};

fn io(op: &'static str, path: &Path, source: std::io::Error) -> SpillError {
    SpillError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `body` under `magic` to `path` (mode 0600), durably when `fsync`.
pub(crate) fn write(
    path: &Path,
    magic: [u8; 4],
    body: &[u8],
    fsync: bool,
) -> Result<(), SpillError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", &tmp, e))?;
    let mut bytes = Vec::with_capacity(8 + body.len());
    bytes.extend_from_slice(&magic);
    bytes.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    bytes.extend_from_slice(body);
    f.write_all(&bytes).map_err(|e| io("write", &tmp, e))?;
    if fsync {
        f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io("rename", path, e))?;
    if fsync {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Why a metadata file could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetaError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is damaged (bad magic or checksum)")]
    Damaged(PathBuf),
}

/// Reads a file written by [`write`] with the same `magic`.
pub(crate) fn read(path: &Path, magic: [u8; 4]) -> Result<Vec<u8>, MetaError> {
    let bytes = fs::read(path).map_err(|e| MetaError::Read(path.to_path_buf(), e))?;
    let damaged = || MetaError::Damaged(path.to_path_buf());
    let (head, body) = bytes.split_at_checked(8).ok_or_else(damaged)?;
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if head[..4] != magic || crc32c::crc32c(body) != crc {
        return Err(damaged());
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.meta");
        write(&path, *b"TEST", b"hello", true).unwrap();
        assert_eq!(read(&path, *b"TEST").unwrap(), b"hello");
        assert!(matches!(read(&path, *b"OTHR"), Err(MetaError::Damaged(_))));
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(read(&path, *b"TEST"), Err(MetaError::Damaged(_))));
        use std::os::unix::fs::PermissionsExt;
        write(&path, *b"TEST", b"again", false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
