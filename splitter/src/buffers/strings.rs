//! String and binary values: the largest offset, the longest value, and the copy of a
//! value by chunks of a size chosen once per column.

use arrow_buffer::ArrowNativeType;

use super::source::ByteSource;

/// The largest offset a string or binary array with offsets of type `O` can hold.
pub(crate) fn max_offset<O: ArrowNativeType>() -> usize {
    if std::mem::size_of::<O>() == 4 {
        i32::MAX as usize
    } else {
        i64::MAX as usize
    }
}

/// The longest value a string or binary column's offsets delimit.
fn longest<O: ArrowNativeType>(offsets: &[O]) -> usize {
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
        return 0;
    };
    if last.as_usize() - first.as_usize() > u32::MAX as usize {
        return usize::MAX; // more than fits any chunk
    }
    // In 32 bits (every length fits, and their differences wrap correctly), which
    // vectorizes on baseline x86-64; 64-bit lanes did not, and cost 3% of the split.
    let ends = offsets.iter().map(|o| o.as_usize() as u32);
    let starts = ends.clone();
    ends.skip(1)
        .zip(starts)
        .map(|(end, start)| end.wrapping_sub(start))
        .max()
        .unwrap_or(0) as usize
}

/// The longest value of all `sources`.
pub(crate) fn longest_of<O: ArrowNativeType>(sources: &[ByteSource<'_, O>]) -> usize {
    sources.iter().map(|(o, _)| longest(o)).max().unwrap_or(0)
}

/// Calls `f::<O, N>(args)` with `N` the chunk size [`Chunk::fitting`] `longest` (0 for
/// [`Chunk::Mixed`]), so each copy loop is built once per chunk size.
macro_rules! with_chunk {
    ($longest:expr, $f:ident::<$o:ty>($($arg:expr),* $(,)?)) => {
        match $crate::buffers::Chunk::fitting($longest) {
            $crate::buffers::Chunk::B16 => $f::<$o, 16>($($arg),*),
            $crate::buffers::Chunk::B32 => $f::<$o, 32>($($arg),*),
            $crate::buffers::Chunk::B64 => $f::<$o, 64>($($arg),*),
            $crate::buffers::Chunk::Mixed => $f::<$o, 0>($($arg),*),
        }
    };
}
pub(crate) use with_chunk;

/// How the values of a string column are copied, chosen once per column from its
/// longest value: by one fixed-size chunk each (no branch on the length, which is
/// mispredicted on free text and stalled every copy behind it), or by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    B16,
    B32,
    B64,
    /// Some value is longer than 64 bytes: 32 or 64-byte chunks, else an exact copy.
    Mixed,
}

impl Chunk {
    pub(crate) fn fitting(longest: usize) -> Self {
        match longest {
            0..=16 => Self::B16,
            17..=32 => Self::B32,
            33..=64 => Self::B64,
            _ => Self::Mixed,
        }
    }
}

/// Appends `src[start..start + len]` to `d`. With `N` > 0, a value of at most `N` bytes
/// is copied as one `N`-byte chunk (inlined vector moves instead of a `memcpy` call)
/// and the excess cut; with `N` = 0, short values take 32 or 64-byte chunks.
#[inline(always)]
pub(crate) fn copy_value<const N: usize>(d: &mut Vec<u8>, src: &[u8], start: usize, len: usize) {
    fn chunk<const N: usize>(d: &mut Vec<u8>, src: &[u8], start: usize, len: usize) -> bool {
        match src.get(start..start + N) {
            Some(chunk) if len <= N => {
                let chunk: &[u8; N] = chunk.try_into().expect("N bytes");
                d.extend_from_slice(chunk);
                d.truncate(d.len() - (N - len));
                true
            }
            _ => false,
        }
    }
    let copied = match N {
        0 => chunk::<32>(d, src, start, len) || chunk::<64>(d, src, start, len),
        _ => chunk::<N>(d, src, start, len),
    };
    if !copied {
        d.extend_from_slice(&src[start..start + len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_longest_value() {
        assert_eq!(longest::<i32>(&[0, 3, 3, 20, 21]), 17);
        assert_eq!(longest::<i64>(&[5]), 0);
        assert_eq!(longest::<i64>(&[],), 0);
        assert_eq!(longest::<i64>(&[(1 << 32) + 5, (1 << 32) + 9]), 4);
        assert_eq!(longest::<i64>(&[0, 1 << 33]), usize::MAX);
        assert_eq!(Chunk::fitting(usize::MAX), Chunk::Mixed);
        let fitting: Vec<Chunk> = [0, 16, 17, 32, 33, 64, 65].map(Chunk::fitting).into();
        use Chunk::*;
        assert_eq!(fitting, [B16, B16, B32, B32, B64, B64, Mixed]);
    }

    /// Every chunk size copies exactly the value, also when fewer than a chunk's bytes
    /// follow it in the source, and after bytes already in the destination.
    #[test]
    fn copy_value_copies_exactly_the_value_whatever_the_chunk() {
        let src: Vec<u8> = (0..200u8).collect();
        fn copy<const N: usize>(src: &[u8], start: usize, len: usize) -> Vec<u8> {
            let mut d = vec![7u8; 3];
            copy_value::<N>(&mut d, src, start, len);
            d
        }
        for (start, len) in [(0, 0), (0, 16), (190, 10), (199, 1), (200, 0), (10, 64)] {
            let mut want = vec![7u8; 3];
            want.extend_from_slice(&src[start..start + len]);
            if len <= 16 {
                assert_eq!(copy::<16>(&src, start, len), want, "16 {start} {len}");
            }
            if len <= 32 {
                assert_eq!(copy::<32>(&src, start, len), want, "32 {start} {len}");
            }
            assert_eq!(copy::<64>(&src, start, len), want, "64 {start} {len}");
            assert_eq!(copy::<0>(&src, start, len), want, "mixed {start} {len}");
        }
        assert_eq!(copy::<0>(&src, 5, 150)[3..], src[5..155]);
    }
}
