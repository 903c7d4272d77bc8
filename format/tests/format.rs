use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;
use sluice_format::*;

#[path = "common/sample.rs"]
mod sample;
use sample::sample_batch;

fn meta() -> BlockMeta {
    BlockMeta {
        map_id: 0x0102_0304_0506_0708,
        map_index: 9,
        attempt: 2,
        seq: 5,
        rows: 4,
    }
}

#[test]
fn batches_round_trip_through_blocks_with_every_codec() {
    let batch = sample_batch();
    let schema_bytes = encode_schema(&batch.schema());
    let decoder = BatchDecoder::new(&schema_bytes).unwrap();
    assert_eq!(decoder.schema().as_ref(), batch.schema().as_ref());
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let mut body = Vec::new();
        encode_batch(&batch, &mut body).unwrap();
        let mut block = Vec::new();
        let header = encode_block(
            meta(),
            &body,
            &CodecConfig::new(codec, 3).unwrap(),
            &mut block,
        )
        .unwrap();
        assert_eq!(header.block_len(), block.len());
        let (decoded_header, raw) = decode_block(&block, &DecodeLimits::default()).unwrap();
        assert_eq!(decoded_header, header);
        assert_eq!(
            (
                header.map_id,
                header.map_index,
                header.attempt,
                header.seq,
                header.rows
            ),
            (meta().map_id, 9, 2, 5, 4)
        );
        assert_eq!(raw, body);
        assert_eq!(
            decoder.decode(Buffer::from(raw)).unwrap(),
            batch,
            "codec {codec:?}"
        );
    }
}

/// The splitter emits blocks at large P as slices of one sorted batch: every slice,
/// at any offset and length (validity bits not byte-aligned, offsets not starting at
/// zero, nested children), must decode to exactly its own rows.
#[test]
fn sliced_batches_decode_to_exactly_their_rows() {
    let batch = sample_batch();
    let schema_bytes = encode_schema(&batch.schema());
    let decoder = BatchDecoder::new(&schema_bytes).unwrap();
    for offset in 0..batch.num_rows() {
        for len in 0..=batch.num_rows() - offset {
            let slice = batch.slice(offset, len);
            let mut body = Vec::new();
            encode_batch(&slice, &mut body).unwrap();
            let decoded = decoder.decode(Buffer::from(body)).unwrap();
            assert_eq!(decoded, slice, "rows {offset}..{}", offset + len);
        }
    }
}

#[test]
fn incompressible_bodies_are_stored_raw() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let body: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut block = Vec::new();
    let header = encode_block(meta(), &body, &CodecConfig::default(), &mut block).unwrap();
    assert_eq!(header.codec, Codec::None);
    assert_eq!(header.stored_len, header.raw_len);
    let compressible = vec![7u8; 4096];
    block.clear();
    let header = encode_block(meta(), &compressible, &CodecConfig::default(), &mut block).unwrap();
    assert_eq!(header.codec, Codec::Lz4);
    assert!(header.stored_len < 100);
}

#[test]
fn every_single_byte_corruption_is_detected() {
    let mut body = Vec::new();
    encode_batch(&sample_batch(), &mut body).unwrap();
    let mut block = Vec::new();
    encode_block(meta(), &body, &CodecConfig::default(), &mut block).unwrap();
    for i in 0..block.len() {
        let mut bad = block.clone();
        bad[i] ^= 0x40;
        assert!(
            decode_block(&bad, &DecodeLimits::default()).is_err(),
            "flip at byte {i} not detected"
        );
    }
    for len in 0..block.len() {
        assert!(matches!(
            decode_block(&block[..len], &DecodeLimits::default()),
            Err(FormatError::Truncated { .. })
        ));
    }
}

#[test]
fn lengths_over_the_limits_are_refused_before_allocating() {
    let mut block = Vec::new();
    encode_block(
        meta(),
        &[1u8; 1000],
        &CodecConfig::new(Codec::None, 1).unwrap(),
        &mut block,
    )
    .unwrap();
    let limits = DecodeLimits {
        max_raw_len: 999,
        max_stored_len: 1 << 20,
    };
    assert!(matches!(
        decode_block(&block, &limits),
        Err(FormatError::TooLarge {
            what: "stored body",
            ..
        } | FormatError::TooLarge {
            what: "raw body",
            ..
        })
    ));
    // A header claiming a 4 GiB raw body (with a valid header crc) is refused too.
    let mut header = BlockHeader::decode(&block).unwrap();
    header.raw_len = u32::MAX;
    header.codec = Codec::Lz4;
    let forged = header.encode();
    let err = BlockView::parse(&forged, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::TooLarge {
                what: "raw body",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn zstd_levels_are_checked() {
    assert!(matches!(
        CodecConfig::new(Codec::Zstd, 0),
        Err(FormatError::InvalidZstdLevel(0))
    ));
    assert!(CodecConfig::new(Codec::Zstd, 22).is_ok());
}

#[test]
fn a_body_with_two_batches_or_trailing_bytes_is_refused() {
    let batch = sample_batch();
    let decoder = BatchDecoder::new(&encode_schema(&batch.schema())).unwrap();
    let mut body = Vec::new();
    encode_batch(&batch, &mut body).unwrap();
    let mut two = body.clone();
    two.extend_from_slice(&body);
    assert!(decoder.decode(Buffer::from(two)).is_err());
    // A batch of another schema is refused.
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("z", DataType::Int64, true)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let mut other_body = Vec::new();
    encode_batch(&other, &mut other_body).unwrap();
    assert!(decoder.decode(Buffer::from(other_body)).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_as_blocks(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_block(&bytes, &DecodeLimits::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic_as_ipc(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_schema(&bytes);
        let decoder = BatchDecoder::new(&encode_schema(&sample_batch().schema())).unwrap();
        let _ = decoder.decode(Buffer::from(bytes));
    }

    #[test]
    fn mutated_ipc_bodies_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let batch = sample_batch();
        let decoder = BatchDecoder::new(&encode_schema(&batch.schema())).unwrap();
        let mut body = Vec::new();
        encode_batch(&batch, &mut body).unwrap();
        for (at, x) in flips {
            let i = at % body.len();
            body[i] ^= x;
        }
        let _ = decoder.decode(Buffer::from(body));
    }
}

/// Found by `cargo fuzz run ipc`: the sample body with the fuzz input XORed over it
/// (the first two bytes pick the offset) gives an offsets buffer that arrow-data 60's
/// validation panics on. The decoder must turn that into an error.
#[test]
fn fuzz_ipc_crash_1_is_an_error() {
    let input = include_bytes!("common/fuzz-ipc-crash-1.bin");
    let batch = sample_batch();
    let decoder = BatchDecoder::new(&encode_schema(&batch.schema())).unwrap();
    let mut body = Vec::new();
    encode_batch(&batch, &mut body).unwrap();
    let at = usize::from(u16::from_le_bytes([input[0], input[1]])) % body.len();
    for (b, x) in body[at..].iter_mut().zip(&input[2..]) {
        *b ^= x;
    }
    let err = decoder.decode(Buffer::from(body)).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::IpcShape("malformed batch (decoder panicked)")
        ),
        "{err:?}"
    );
}

/// A valid batch of no rows (its message body is empty, as pyarrow and others write
/// it) decodes to an empty batch of the schema.
#[test]
fn an_empty_batch_decodes() {
    let fixed = vec![Field::new("k", DataType::Int64, false)];
    let mixed = vec![
        Field::new("k", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ];
    for fields in [fixed, mixed] {
        let schema = Arc::new(Schema::new(fields));
        let empty = RecordBatch::new_empty(schema.clone());
        let mut ipc = Vec::new();
        encode_batch(&empty, &mut ipc).unwrap();
        let decoder = BatchDecoder::new(&encode_schema(&schema)).unwrap();
        let got = decoder.decode(Buffer::from(ipc)).unwrap();
        assert_eq!(got.num_rows(), 0);
        assert_eq!(got.schema(), schema);
    }
}

/// A batch may claim at most 8 rows per byte of its message (plus 1024): a batch of
/// no columns, or of Null-typed ones, holds no bytes per row and could otherwise claim
/// millions in a few bytes.
#[test]
fn rows_claimed_without_bytes_are_bounded() {
    use arrow_array::{NullArray, RecordBatchOptions};
    let none = Arc::new(Schema::empty());
    let nulls = Arc::new(Schema::new(vec![Field::new("n", DataType::Null, true)]));
    let batch_of = |schema: &Arc<Schema>, rows: usize| {
        let columns: Vec<arrow_array::ArrayRef> = if schema.fields().is_empty() {
            vec![]
        } else {
            vec![Arc::new(NullArray::new(rows))]
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options).unwrap()
    };
    for schema in [none, nulls] {
        let decoder = BatchDecoder::new(&encode_schema(&schema)).unwrap();
        let mut small = Vec::new();
        encode_batch(&batch_of(&schema, 1000), &mut small).unwrap();
        let got = decoder.decode(Buffer::from(small)).unwrap();
        assert_eq!(got.num_rows(), 1000);
        let mut claimed = Vec::new();
        encode_batch(&batch_of(&schema, 2_000_000), &mut claimed).unwrap();
        assert!(claimed.len() < 1000);
        match decoder.decode(Buffer::from(claimed)) {
            Err(FormatError::IpcShape(why)) => {
                assert_eq!(why, "batch claims more rows than its bytes can hold")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// A block whose checksums are right but whose body is not what its header claims (a
/// hostile writer can compute crc32c too): the decoders fail with an error, never
/// write past `raw_len`, and a short output is a length mismatch.
#[test]
fn bodies_with_valid_checksums_but_wrong_contents_are_errors() {
    let raw: Vec<u8> = (0..4000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let lz4 = lz4_flex::block::compress(&raw);
    let zstd = zstd::bulk::compress(&raw, 1).unwrap();
    // An lz4 sequence of one literal and a match 60000 bytes back, before the output.
    let bad_offset = vec![0x10, b'x', 0x60, 0xea, 0x00, 0x00];
    let block = |codec, body: &[u8], raw_len: u32| {
        let header = BlockHeader {
            codec,
            map_id: 1,
            map_index: 0,
            attempt: 0,
            seq: 0,
            rows: 1,
            raw_len,
            stored_len: body.len() as u32,
            body_crc: crc32c::crc32c(body),
        };
        let mut b = header.encode().to_vec();
        b.extend_from_slice(body);
        decode_block(&b, &DecodeLimits::default()).map(|(_, raw)| raw)
    };
    let full = raw.len() as u32;
    assert_eq!(block(Codec::Lz4, &lz4, full).unwrap(), raw);
    assert_eq!(block(Codec::Zstd, &zstd, full).unwrap(), raw);
    for (codec, body) in [(Codec::Lz4, &lz4), (Codec::Zstd, &zstd)] {
        // More output than the header claims: refused, not written past the buffer.
        assert!(
            matches!(
                block(codec, body, full / 2),
                Err(FormatError::Decompress { .. })
            ),
            "{codec:?} longer than raw_len"
        );
        // Less output than claimed.
        assert!(
            matches!(
                block(codec, body, full + 1),
                Err(FormatError::LengthMismatch { expected, actual })
                    if expected == full + 1 && actual == full as usize
            ),
            "{codec:?} shorter than raw_len"
        );
    }
    assert!(matches!(
        block(Codec::Lz4, &bad_offset, 100),
        Err(FormatError::Decompress { codec: "lz4", .. })
    ));
    assert!(matches!(
        block(Codec::Zstd, b"not a zstd frame", 100),
        Err(FormatError::Decompress { codec: "zstd", .. })
    ));
}
