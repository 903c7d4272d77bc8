//! A shuffle's fixed shape (partition count, partitioning, Arrow schema) in the form
//! the server keeps on disk next to the shuffle's data, so recovery can serve it again.

use bytes::{BufMut, Bytes};

use crate::message::{partitioning, put_partitioning};
use crate::wire::{put_bytes, Reader};
use crate::{Partitioning, ProtoError};

const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleDescriptor {
    pub num_partitions: u32,
    pub partitioning: Partitioning,
    /// The Arrow IPC schema message the first push declared.
    pub schema: Bytes,
}

impl ShuffleDescriptor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.schema.len());
        out.put_u8(VERSION);
        out.put_u32_le(self.num_partitions);
        put_partitioning(&mut out, &self.partitioning);
        put_bytes(&mut out, &self.schema);
        out
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ProtoError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("descriptor version")?;
        if version != VERSION {
            return Err(ProtoError::Invalid {
                field: "descriptor version",
                reason: format!("unknown version {version}"),
            });
        }
        let d = Self {
            num_partitions: r.u32("partition count")?,
            partitioning: partitioning(&mut r)?,
            schema: r.bytes("schema")?,
        };
        r.finish()?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncation() {
        let d = ShuffleDescriptor {
            num_partitions: 200,
            partitioning: Partitioning::Hash {
                columns: vec![0, 3],
            },
            schema: Bytes::from_static(b"schema bytes"),
        };
        let bytes = d.encode();
        assert_eq!(
            ShuffleDescriptor::decode(Bytes::from(bytes.clone())).unwrap(),
            d
        );
        for cut in 0..bytes.len() {
            assert!(ShuffleDescriptor::decode(Bytes::copy_from_slice(&bytes[..cut])).is_err());
        }
    }
}
