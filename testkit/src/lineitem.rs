//! Lineitem-like data: TPC-H shapes (longs, decimal(15,2), dates, short and long
//! strings, about 1% nulls in a few columns), the benchmark's data set.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::Rng;

pub fn lineitem_schema() -> SchemaRef {
    let dec = DataType::Decimal128(15, 2);
    Arc::new(Schema::new(vec![
        Field::new("l_orderkey", DataType::Int64, false),
        Field::new("l_partkey", DataType::Int64, false),
        Field::new("l_suppkey", DataType::Int64, false),
        Field::new("l_linenumber", DataType::Int64, false),
        Field::new("l_quantity", dec.clone(), false),
        Field::new("l_extendedprice", dec.clone(), false),
        Field::new("l_discount", dec.clone(), true),
        Field::new("l_tax", dec, false),
        Field::new("l_shipdate", DataType::Date32, false),
        Field::new("l_commitdate", DataType::Date32, true),
        Field::new("l_receiptdate", DataType::Date32, false),
        Field::new("l_returnflag", DataType::Utf8, false),
        Field::new("l_linestatus", DataType::Utf8, false),
        Field::new("l_shipinstruct", DataType::Utf8, false),
        Field::new("l_shipmode", DataType::Utf8, false),
        Field::new("l_comment", DataType::Utf8, true),
    ]))
}

const INSTRUCT: [&str; 4] = [
    "DELIVER IN PERSON",
    "COLLECT COD",
    "NONE",
    "TAKE BACK RETURN",
];
const MODES: [&str; 7] = ["REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"];
const WORDS: [&str; 12] = [
    "furiously",
    "ironic",
    "packages",
    "sleep",
    "quickly",
    "final",
    "deposits",
    "boost",
    "carefully",
    "regular",
    "accounts",
    "haggle",
];

/// One batch of `rows` rows; `seed` makes every batch distinct and reproducible.
pub fn lineitem_batch(rows: usize, seed: u64) -> RecordBatch {
    let mut r = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5851_f42d);
    let mut cols: [Int64Builder; 4] = std::array::from_fn(|_| Int64Builder::with_capacity(rows));
    let mut decs: [Decimal128Builder; 4] =
        std::array::from_fn(|_| Decimal128Builder::with_capacity(rows));
    let mut dates: [Date32Builder; 3] = std::array::from_fn(|_| Date32Builder::with_capacity(rows));
    let mut strs: [StringBuilder; 5] =
        std::array::from_fn(|_| StringBuilder::with_capacity(rows, rows * 16));
    let mut comment = String::with_capacity(48);
    for _ in 0..rows {
        let order = r.below(6_000_000 * 4) as i64;
        cols[0].append_value(order);
        cols[1].append_value(r.below(200_000) as i64 + 1);
        cols[2].append_value(r.below(10_000) as i64 + 1);
        cols[3].append_value(r.below(7) as i64 + 1);
        let qty = r.below(50) as i128 + 1;
        decs[0].append_value(qty * 100);
        decs[1].append_value(qty * (90_000 + r.below(10_000_000) as i128));
        if r.below(100) == 0 {
            decs[2].append_null();
        } else {
            decs[2].append_value(r.below(11) as i128);
        }
        decs[3].append_value(r.below(9) as i128);
        let ship = 8036 + r.below(2526) as i32;
        dates[0].append_value(ship);
        if r.below(100) == 0 {
            dates[1].append_null();
        } else {
            dates[1].append_value(ship + r.below(60) as i32 - 30);
        }
        dates[2].append_value(ship + r.below(30) as i32 + 1);
        strs[0].append_value(["R", "A", "N"][r.below(3) as usize]);
        strs[1].append_value(["O", "F"][r.below(2) as usize]);
        strs[2].append_value(INSTRUCT[r.below(4) as usize]);
        strs[3].append_value(MODES[r.below(7) as usize]);
        if r.below(100) == 0 {
            strs[4].append_null();
        } else {
            comment.clear();
            let target = 10 + r.below(34) as usize;
            while comment.len() < target {
                comment.push_str(WORDS[r.below(WORDS.len() as u64) as usize]);
                comment.push(' ');
            }
            comment.truncate(target);
            strs[4].append_value(&comment);
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(16);
    columns.extend(cols.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    for b in &mut decs {
        let a = b
            .finish()
            .with_precision_and_scale(15, 2)
            .expect("valid precision");
        columns.push(Arc::new(a));
    }
    columns.extend(dates.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(strs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    RecordBatch::try_new(lineitem_schema(), columns).expect("columns match the schema")
}
