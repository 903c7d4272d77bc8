//! A record batch with every column kind the IPC checks must handle: nullable
//! primitives, strings, binary, a dictionary, a list and a struct. Shared by the format
//! tests and the `ipc` fuzz target (which includes this file by path).

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BinaryArray, DictionaryArray, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_schema::{DataType, Field, Schema};

pub fn sample_batch() -> RecordBatch {
    let dict: DictionaryArray<Int32Type> = vec![Some("x"), None, Some("y"), Some("x")]
        .into_iter()
        .collect();
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1), None]),
        None,
        Some(vec![]),
        Some(vec![Some(4)]),
    ]);
    let strukt = StructArray::from(vec![(
        Arc::new(Field::new("a", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)])) as ArrayRef,
    )]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![
            Some(1),
            None,
            Some(-3),
            Some(i64::MAX),
        ])),
        Arc::new(StringArray::from(vec![
            Some("a"),
            Some(""),
            None,
            Some("日本語"),
        ])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"\x00\xff"[..]),
            None,
            Some(b""),
            Some(b"z"),
        ])),
        Arc::new(dict),
        Arc::new(list),
        Arc::new(strukt),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}
