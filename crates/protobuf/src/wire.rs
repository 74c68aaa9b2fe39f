//! The protobuf wire format, read-only: a cursor that yields `(field number, value)` pairs and never panics on
//! hostile input (every length is checked against the remaining bytes).

/// What can be wrong with the bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated input")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("field number 0 is invalid")]
    ZeroFieldNumber,
    #[error("unsupported wire type {0}")]
    WireType(u8),
}

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl WireValue<'_> {
    /// Human-readable wire type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "fixed64",
            WireValue::Fixed32(_) => "fixed32",
            WireValue::Bytes(_) => "length-delimited",
        }
    }
}

/// A cursor over one encoded message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether all bytes have been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Reads one varint (up to 10 bytes, little-endian groups of 7 bits).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The next field, or `None` at the end of the message. Groups (wire types 3/4) are refused: Kubernetes
    /// messages never use them.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::Truncated)?;
        if number == 0 {
            return Err(WireError::ZeroFieldNumber);
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                WireValue::Fixed64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                WireValue::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => return Err(WireError::WireType(other as u8)),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_fixed_and_bytes() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed64 1.5, field 4 fixed32 7
        let mut buf = vec![0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x19];
        buf.extend_from_slice(&1.5f64.to_le_bytes());
        buf.extend_from_slice(&[0x25, 7, 0, 0, 0]);
        let mut r = Reader::new(&buf);
        assert_eq!(r.next_field(), Ok(Some((1, WireValue::Varint(300)))));
        assert_eq!(r.next_field(), Ok(Some((2, WireValue::Bytes(b"hi")))));
        assert_eq!(r.next_field(), Ok(Some((3, WireValue::Fixed64(1.5f64.to_bits())))));
        assert_eq!(r.next_field(), Ok(Some((4, WireValue::Fixed32(7)))));
        assert_eq!(r.next_field(), Ok(None));
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        assert_eq!(Reader::new(&[0x08]).next_field(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[0x12, 0x05, b'a']).next_field(), Err(WireError::Truncated));
        assert_eq!(Reader::new(&[0x0b]).next_field(), Err(WireError::WireType(3)));
        assert_eq!(Reader::new(&[0x00]).next_field(), Err(WireError::ZeroFieldNumber));
        assert_eq!(Reader::new(&[0xff; 11]).next_field(), Err(WireError::VarintTooLong));
        // a length close to usize::MAX must not overflow
        let huge = [0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&huge).next_field(), Err(WireError::Truncated));
    }
}
