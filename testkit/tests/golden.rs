//! The generated data never changes: benchmark results and test seeds depend on it.
//! The expected values were produced by the generators' previous copies (in
//! `bench/src/data.rs` and `shuffle-client/tests/common/mod.rs`) before they moved here.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;
use sluice_testkit::{every_type, lineitem_batch, Rng};

/// FNV-1a over every buffer of every column (values, offsets, validity).
fn fingerprint(batch: &RecordBatch) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    for c in batch.columns() {
        let d = c.to_data();
        for b in d.buffers() {
            add(b.as_slice());
        }
        if let Some(n) = d.nulls() {
            add(n.validity());
        }
    }
    h
}

#[test]
fn rng_is_splitmix64() {
    // The reference sequence of splitmix64 from seed 0.
    let mut r = Rng::new(0);
    assert_eq!(
        [r.next(), r.next(), r.next()],
        [
            0xe220_a839_7b1d_cdaf,
            0x6e78_9e6a_a1b9_65f4,
            0x06c4_5d18_8009_454f
        ]
    );
    let mut r = Rng::new(0x5eed);
    assert_eq!(
        [r.next(), r.next(), r.below(1000)],
        [0x09f1_fd9d_03f0_a9b4, 0x5532_7416_1bbf_8475, 891]
    );
}

#[test]
fn lineitem_batches_are_unchanged() {
    let b = lineitem_batch(4, 1);
    let orderkey = b.column(0).as_primitive::<Int64Type>();
    assert_eq!(orderkey.values(), &[5447273, 21122772, 4015788, 1506234]);
    let comment = b.column(15).as_string::<i32>();
    assert_eq!(
        comment.iter().collect::<Vec<_>>(),
        [
            Some("carefully deposits quickly pa"),
            Some("regular deposits packages accou"),
            Some("boost care"),
            Some("furiously sl"),
        ]
    );
    for (rows, seed, expected) in [
        (4, 1, 0xaa20_bbc7_7717_9a31),
        (1000, 7, 0xe4cd_5e63_dd9e_000e),
        (8192, 0, 0x4ab1_7ab8_aa13_0080),
    ] {
        let got = fingerprint(&lineitem_batch(rows, seed));
        assert_eq!(got, expected, "lineitem_batch({rows}, {seed})");
    }
}

#[test]
fn every_type_batches_are_unchanged() {
    let b = every_type::batch(4, 1);
    let key = b.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        key.values(),
        &[-15250258816736, -1146, -128296837, 45236379102299]
    );
    let name = b.column(11).as_string::<i32>();
    assert_eq!(
        name.iter().collect::<Vec<_>>(),
        [Some("é"), Some("日本語"), None, Some("ironic")]
    );
    for (rows, seed, expected) in [
        (4, 1, 0x77bd_f330_2b0b_fb12),
        (1000, 7, 0x891d_3429_f36d_a625),
        (3000, 42, 0xc973_e391_983f_d31d),
    ] {
        let got = fingerprint(&every_type::batch(rows, seed));
        assert_eq!(got, expected, "every_type::batch({rows}, {seed})");
    }
}
