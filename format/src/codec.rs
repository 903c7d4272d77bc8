use crate::error::FormatError;

/// Compression codec of a block body. The id is stored in the block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    None = 0,
    Lz4 = 1,
    Zstd = 2,
}

impl Codec {
    pub fn from_id(id: u8) -> Result<Self, FormatError> {
        match id {
            0 => Ok(Self::None),
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            other => Err(FormatError::UnknownCodec(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Codec choice for writing, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecConfig {
    pub codec: Codec,
    /// zstd level (1..=22); ignored by other codecs.
    pub zstd_level: i32,
}

impl Default for CodecConfig {
    fn default() -> Self {
        Self {
            codec: Codec::Lz4,
            zstd_level: 1,
        }
    }
}

impl CodecConfig {
    pub fn new(codec: Codec, zstd_level: i32) -> Result<Self, FormatError> {
        if codec == Codec::Zstd && !(1..=22).contains(&zstd_level) {
            return Err(FormatError::InvalidZstdLevel(zstd_level));
        }
        Ok(Self { codec, zstd_level })
    }

    /// The most bytes [`compress_into`](Self::compress_into) appends for `raw_len` bytes:
    /// a buffer with this much room never grows (nor moves) while a block is encoded.
    pub fn max_compressed_len(&self, raw_len: usize) -> usize {
        match self.codec {
            Codec::None => raw_len,
            Codec::Lz4 => lz4_flex::block::get_maximum_output_size(raw_len),
            Codec::Zstd => zstd::zstd_safe::compress_bound(raw_len),
        }
    }

    /// Appends the compressed form of `raw` to `out` and returns the codec actually used:
    /// when compression does not shrink the body, it is stored as is (`Codec::None`).
    pub fn compress_into(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<Codec, FormatError> {
        let start = out.len();
        match self.codec {
            Codec::None => {}
            Codec::Lz4 => {
                let bound = lz4_flex::block::get_maximum_output_size(raw.len());
                out.resize(start + bound, 0);
                let n = lz4_flex::block::compress_into(raw, &mut out[start..]).map_err(|e| {
                    FormatError::Compress {
                        codec: "lz4",
                        message: e.to_string(),
                    }
                })?;
                out.truncate(start + n);
            }
            Codec::Zstd => {
                let bound = zstd::zstd_safe::compress_bound(raw.len());
                out.resize(start + bound, 0);
                let n = zstd::bulk::compress_to_buffer(raw, &mut out[start..], self.zstd_level)
                    .map_err(|e| FormatError::Compress {
                        codec: "zstd",
                        message: e.to_string(),
                    })?;
                out.truncate(start + n);
            }
        }
        if self.codec != Codec::None && out.len() - start < raw.len() {
            return Ok(self.codec);
        }
        out.truncate(start);
        out.extend_from_slice(raw);
        Ok(Codec::None)
    }
}

/// Decompresses `stored` into a fresh buffer of exactly `raw_len` bytes. The caller has
/// already checked `raw_len` against its limits. The decoders write into the buffer's
/// capacity (no pass to zero it first) and fail on output beyond `raw_len`.
pub(crate) fn decompress(
    codec: Codec,
    stored: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>, FormatError> {
    let raw_len_usize = raw_len as usize;
    let out = match codec {
        Codec::None => {
            if stored.len() != raw_len_usize {
                return Err(FormatError::LengthMismatch {
                    expected: raw_len,
                    actual: stored.len(),
                });
            }
            stored.to_vec()
        }
        Codec::Lz4 => lz4_flex::block::decompress(stored, raw_len_usize)
            .map_err(|e| decompress_error("lz4", e))?,
        Codec::Zstd => zstd::bulk::decompress(stored, raw_len_usize)
            .map_err(|e| decompress_error("zstd", e))?,
    };
    let actual = out.len();
    if actual != raw_len_usize {
        return Err(FormatError::LengthMismatch {
            expected: raw_len,
            actual,
        });
    }
    Ok(out)
}

fn decompress_error(codec: &'static str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Decompress {
        codec,
        message: e.to_string(),
    }
}
