//! Primitive little-endian readers and writers used by message codecs.

use bytes::{Buf, BufMut, Bytes};

use crate::ProtoError;

pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), ProtoError> {
        if self.buf.remaining() < n {
            return Err(ProtoError::Truncated(what));
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16_le())
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32_le())
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64_le())
    }

    /// A u32-length-prefixed byte string, sliced without copying.
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Bytes, ProtoError> {
        let len = self.u32(what)? as usize;
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, ProtoError> {
        let raw = self.bytes(what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtoError::Invalid {
            field: what,
            reason: "not UTF-8".into(),
        })
    }

    /// A u32-count-prefixed vector of fixed-size items. The count is checked against the
    /// bytes present before anything is allocated.
    pub(crate) fn vec<T>(
        &mut self,
        what: &'static str,
        item_len: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, ProtoError>,
    ) -> Result<Vec<T>, ProtoError> {
        let count = self.u32(what)? as usize;
        self.need(count.saturating_mul(item_len), what)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Everything left, without copying.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_to(self.buf.len())
    }

    pub(crate) fn finish(self) -> Result<(), ProtoError> {
        match self.buf.remaining() {
            0 => Ok(()),
            n => Err(ProtoError::TrailingBytes(n)),
        }
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

pub(crate) fn put_u64s(out: &mut Vec<u8>, v: &[u64]) {
    out.put_u32_le(v.len() as u32);
    for x in v {
        out.put_u64_le(*x);
    }
}
