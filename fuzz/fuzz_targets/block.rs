//! Stored blocks as a reducer (or the recovery scan) reads them: parse the header,
//! check both checksums, decompress within the limits. Two inputs per run: the raw
//! bytes, and a valid block of each codec with the input's bytes XORed over it (so the
//! fuzzer reaches past the checksums into the codecs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_format::{
    decode_block, encode_block, BlockHeader, BlockMeta, Codec, CodecConfig, DecodeLimits,
};

fn valid_block(codec: Codec) -> Vec<u8> {
    let body: Vec<u8> = (0..4096u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let meta = BlockMeta {
        map_id: 7,
        map_index: 1,
        attempt: 0,
        seq: 3,
        rows: 100,
    };
    let mut out = Vec::new();
    encode_block(meta, &body, &CodecConfig::new(codec, 1).unwrap(), &mut out).unwrap();
    out
}

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let _ = BlockHeader::decode(data);
    if let Ok((header, body)) = decode_block(data, &limits) {
        assert_eq!(body.len() as u64, u64::from(header.raw_len));
    }
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let mut block = valid_block(codec);
        // The first two bytes pick where the XOR starts; the rest is XORed in.
        if data.len() > 2 {
            let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % block.len();
            for (b, x) in block[at..].iter_mut().zip(&data[2..]) {
                *b ^= x;
            }
        }
        let _ = decode_block(&block, &limits);
    }
});
