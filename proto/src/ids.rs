//! Validated identifiers. App ids become directory names on the server, so they are
//! restricted to a safe alphabet and can never name a path component like `..`.

use std::fmt;

/// Maximum length of an application id.
pub const MAX_APP_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("application id is empty")]
    Empty,
    #[error("application id is longer than {MAX_APP_ID_LEN} bytes")]
    TooLong,
    #[error("application id {0:?} has a character outside [A-Za-z0-9._-] or starts with '.'")]
    BadCharacter(String),
}

/// An application id: 1..=128 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(String);

impl AppId {
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > MAX_APP_ID_LEN {
            return Err(IdError::TooLong);
        }
        let ok = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok || id.starts_with('.') {
            return Err(IdError::BadCharacter(id));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
