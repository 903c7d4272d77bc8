//! Generated secrets kept in files: the cluster token every connection must present, and
//! the admin token the admin endpoint asks for before deleting.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::StartError;

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the token file, or creates it (mode 0600) with 32 random bytes in hex. `what`
/// names the token in errors and logs.
pub(crate) fn load_or_create(path: &Path, what: &'static str) -> Result<Vec<u8>, StartError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(StartError::Invalid(format!(
                    "{what} file {} is empty",
                    path.display()
                )));
            }
            return Ok(token.as_bytes().to_vec());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("reading token file", path)(e)),
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| StartError::Invalid(format!("no randomness: {e}")))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("creating token file", path))?;
    file.write_all(token.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(io_err("writing token file", path))?;
    tracing::info!(path = %path.display(), token = what, "generated a new token");
    Ok(token.into_bytes())
}
