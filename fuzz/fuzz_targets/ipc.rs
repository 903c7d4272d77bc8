//! Arrow IPC payloads as the server takes them from a push (and a reducer from a
//! block): a schema message, then batch bodies checked by `ipc_check` and decoded
//! against it. Three inputs per run: the bytes as a schema, the bytes as a body of a
//! schema with every column kind Sluice handles, and a valid body of that schema with
//! the bytes XORed over it. A decoded batch must match its schema.
//!
//! arrow-ipc/arrow-data 60 panic on some malformed buffers (e.g. an offsets buffer whose
//! length is not a multiple of 4: `typed_data`'s alignment assertion). `BatchDecoder`
//! contains those with `catch_unwind` and returns an error; this target therefore
//! ignores panics raised inside arrow crates and aborts on any other panic. The first
//! such input found is a regression test in `format/tests/format.rs`.
#![no_main]

use std::sync::OnceLock;

use arrow_buffer::Buffer;
use libfuzzer_sys::fuzz_target;
use sluice_format::{decode_schema, encode_batch, encode_schema, BatchDecoder};

#[path = "../../format/tests/common/sample.rs"]
mod sample;

struct Fixture {
    decoder: BatchDecoder,
    body: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Replaces libfuzzer-sys's abort-on-any-panic hook (installed before the first
        // input): arrow's contained panics unwind into `BatchDecoder`'s catch_unwind.
        std::panic::set_hook(Box::new(|info| {
            let in_arrow = info
                .location()
                .is_some_and(|l| l.file().contains("/arrow-"));
            if !in_arrow {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
        let batch = sample::sample_batch();
        let decoder = BatchDecoder::new(&encode_schema(&batch.schema())).unwrap();
        let mut body = Vec::new();
        encode_batch(&batch, &mut body).unwrap();
        Fixture { decoder, body }
    })
}

fn check(decoder: &BatchDecoder, body: Vec<u8>) {
    if let Ok(batch) = decoder.decode(Buffer::from(body)) {
        assert_eq!(batch.schema().fields(), decoder.schema().fields());
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = decode_schema(data);
    check(&f.decoder, data.to_vec());
    if data.len() > 2 {
        let mut body = f.body.clone();
        let at = usize::from(u16::from_le_bytes([data[0], data[1]])) % body.len();
        for (b, x) in body[at..].iter_mut().zip(&data[2..]) {
            *b ^= x;
        }
        check(&f.decoder, body);
    }
});
