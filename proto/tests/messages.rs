use bytes::Bytes;
use proptest::prelude::*;
use sluice_proto::session::{FetchSession, FetchStep, PushSession, PushStep};
use sluice_proto::*;

fn app() -> AppId {
    AppId::new("app-1").unwrap()
}

fn all_messages() -> Vec<Message> {
    let secret = Bytes::from_static(b"secret");
    vec![
        Message::Hello {
            version: 1,
            token: Bytes::from_static(b"tok"),
            client: "c".into(),
        },
        Message::HelloOk {
            version: 1,
            server: "s".into(),
        },
        Message::error(ErrorCode::Other(999), "why"),
        Message::Ok,
        Message::RegisterApp {
            app: app(),
            secret: secret.clone(),
        },
        Message::PushStart(sluice_proto::PushStart {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 7,
            map: MapAttempt {
                map_id: u64::MAX,
                map_index: 3,
                attempt: 1,
            },
            num_partitions: 2000,
            partitioning: Partitioning::Hash {
                columns: vec![0, 4],
            },
            schema: Bytes::from_static(b"schema bytes"),
            replicas: vec!["node-2:7337".into(), "[::1]:7337".into()],
        }),
        Message::PushStart(sluice_proto::PushStart {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 8,
            map: MapAttempt {
                map_id: 1,
                map_index: 0,
                attempt: 0,
            },
            num_partitions: 16,
            partitioning: Partitioning::Range {
                keys: vec![
                    RangeOrder {
                        column: 2,
                        descending: true,
                        nulls_first: false,
                    },
                    RangeOrder {
                        column: 0,
                        descending: false,
                        nulls_first: true,
                    },
                ],
                bounds_schema: Bytes::from_static(b"bounds schema"),
                bounds: Bytes::from_static(b"bounds batch"),
                reversed: false,
            },
            schema: Bytes::from_static(b"schema bytes"),
            replicas: vec![],
        }),
        Message::PushStart(sluice_proto::PushStart {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 9,
            map: MapAttempt {
                map_id: 2,
                map_index: 1,
                attempt: 0,
            },
            num_partitions: 4,
            partitioning: Partitioning::Range {
                keys: vec![RangeOrder {
                    column: 0,
                    descending: false,
                    nulls_first: true,
                }],
                bounds_schema: Bytes::from_static(b"schema"),
                bounds: Bytes::from_static(b"batch"),
                reversed: true,
            },
            schema: Bytes::from_static(b"schema bytes"),
            replicas: vec![],
        }),
        Message::PushBatch {
            ipc: Bytes::from(vec![1u8; 1000]),
        },
        Message::PushEnd { sums: vec![] },
        Message::PushEnd {
            sums: vec![
                PartitionSum {
                    partition: 0,
                    rows: 4,
                    checksum: 99,
                },
                PartitionSum {
                    partition: 2,
                    rows: 6,
                    checksum: u64::MAX,
                },
            ],
        },
        Message::PushCommitted {
            partition_bytes: vec![1, 0, 3],
            partition_rows: vec![4, 0, 6],
            replica: None,
        },
        Message::PushCommitted {
            partition_bytes: vec![],
            partition_rows: vec![],
            replica: Some("node-3:7337".into()),
        },
        Message::ReplicaStart(sluice_proto::PushStart {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 7,
            map: MapAttempt {
                map_id: 5,
                map_index: 1,
                attempt: 0,
            },
            num_partitions: 3,
            partitioning: Partitioning::Single,
            schema: Bytes::from_static(b"schema bytes"),
            replicas: vec![],
        }),
        Message::ReplicaBlock {
            partition: 2,
            block: Bytes::from(vec![3u8; 100]),
        },
        Message::ReplicaEnd {
            sums: vec![PartitionSum {
                partition: 1,
                rows: 1,
                checksum: 1,
            }],
        },
        Message::FetchSums {
            partition: 4,
            sums: vec![MapSum {
                map_id: 9,
                rows: 10,
                checksum: 11,
            }],
        },
        Message::FetchRequest(sluice_proto::FetchRequest {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 1,
            start_partition: 5,
            end_partition: 9,
            maps: MapFilter::MapIds(vec![3, 1]),
        }),
        Message::FetchRequest(sluice_proto::FetchRequest {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 1,
            start_partition: 0,
            end_partition: 1,
            maps: MapFilter::MapIndexRange { start: 2, end: 4 },
        }),
        Message::FetchSchema { schema: None },
        Message::FetchSchema {
            schema: Some(Bytes::from_static(b"s")),
        },
        Message::FetchBlock {
            partition: 6,
            block: Bytes::from_static(b"block"),
        },
        Message::FetchEnd {
            blocks: 1,
            bytes: 2,
            rows: 3,
            missing_maps: vec![9],
        },
        Message::DeleteShuffle {
            app: app(),
            secret: secret.clone(),
            shuffle_id: 4,
        },
        Message::DeleteApp { app: app(), secret },
    ]
}

fn decode_frame(frame: &[u8]) -> Result<Message, ProtoError> {
    let head: [u8; FRAME_HEADER_LEN] = frame[..FRAME_HEADER_LEN].try_into().unwrap();
    let header = FrameHeader::decode(head, &Limits::default())?;
    assert_eq!(header.body_len as usize, frame.len() - FRAME_HEADER_LEN);
    header.decode_body(Bytes::copy_from_slice(&frame[FRAME_HEADER_LEN..]))
}

#[test]
fn every_message_round_trips_and_head_plus_payload_equals_the_frame() {
    for msg in all_messages() {
        let frame = encode_frame(&msg);
        assert_eq!(decode_frame(&frame).unwrap(), msg);
        let mut split = msg.encode_head();
        if let Some(p) = msg.trailing_payload() {
            split.extend_from_slice(p);
        }
        assert_eq!(split, frame, "{:?}", msg.kind());
    }
}

#[test]
fn truncated_or_padded_bodies_are_errors() {
    for msg in all_messages() {
        let frame = encode_frame(&msg);
        let body = &frame[FRAME_HEADER_LEN..];
        let kind = frame[4];
        if msg.trailing_payload().is_none() {
            for len in 0..body.len() {
                assert!(
                    Message::decode(kind, Bytes::copy_from_slice(&body[..len])).is_err(),
                    "{:?} truncated to {len}",
                    msg.kind()
                );
            }
            let mut padded = body.to_vec();
            padded.push(0);
            assert_eq!(
                Message::decode(kind, Bytes::from(padded)),
                Err(ProtoError::TrailingBytes(1))
            );
        }
    }
}

#[test]
fn frame_length_is_checked_against_the_limit() {
    let limits = Limits {
        max_frame_len: 100,
        max_partitions: 10,
    };
    assert!(FrameHeader::decode([100, 0, 0, 0, 1], &limits).is_ok());
    assert_eq!(
        FrameHeader::decode([101, 0, 0, 0, 1], &limits),
        Err(ProtoError::FrameTooLarge {
            len: 101,
            limit: 100
        })
    );
}

#[test]
fn a_huge_vector_count_does_not_allocate() {
    // PushCommitted claiming 2^32-1 entries in a 4-byte body.
    let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(
        Message::decode(23, body),
        Err(ProtoError::Truncated("partition bytes"))
    );
}

#[test]
fn app_ids_refuse_path_components() {
    for bad in [
        "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "nul\0", "é",
    ] {
        assert!(AppId::new(bad).is_err(), "{bad:?}");
    }
    assert!(AppId::new("x".repeat(129)).is_err());
    for good in ["app-1", "application_1700000000000_0001", "A.b-c_d"] {
        assert!(AppId::new(good).is_ok(), "{good:?}");
    }
}

#[test]
fn push_session_enforces_order() {
    let Some(Message::PushStart(start)) = all_messages()
        .into_iter()
        .find(|m| m.kind() == MessageKind::PushStart)
    else {
        panic!("no PushStart among the sample messages");
    };
    assert!(matches!(
        PushSession::start(&start, 1000),
        Err(ProtoError::Invalid {
            field: "partition count",
            ..
        })
    ));
    let mut s = PushSession::start(&start, 2000).unwrap();
    assert!(
        s.on_message(Message::PushStart(start)).is_err(),
        "second start"
    );
    assert!(matches!(
        s.on_message(Message::PushBatch { ipc: Bytes::new() }),
        Ok(PushStep::Batch(_))
    ));
    assert!(matches!(
        s.on_message(Message::PushEnd { sums: vec![] }),
        Ok(PushStep::End(_))
    ));
    assert!(
        s.on_message(Message::PushBatch { ipc: Bytes::new() })
            .is_err(),
        "batch after end"
    );
}

#[test]
fn fetch_session_checks_partitions_and_totals() {
    let mut s = FetchSession::new(2, 4);
    assert!(
        s.on_message(Message::FetchBlock {
            partition: 2,
            block: Bytes::new()
        })
        .is_err(),
        "block before schema"
    );
    let mut s = FetchSession::new(2, 4);
    s.on_message(Message::FetchSchema { schema: None }).unwrap();
    assert!(
        s.on_message(Message::FetchBlock {
            partition: 4,
            block: Bytes::new()
        })
        .is_err(),
        "outside range"
    );
    let mut s = FetchSession::new(2, 4);
    s.on_message(Message::FetchSchema { schema: None }).unwrap();
    s.on_message(Message::FetchBlock {
        partition: 3,
        block: Bytes::from_static(b"abc"),
    })
    .unwrap();
    assert!(s
        .on_message(Message::FetchEnd {
            blocks: 1,
            bytes: 4,
            rows: 0,
            missing_maps: vec![]
        })
        .is_err());
    let mut s = FetchSession::new(2, 4);
    s.on_message(Message::FetchSchema { schema: None }).unwrap();
    s.on_message(Message::FetchBlock {
        partition: 3,
        block: Bytes::from_static(b"abc"),
    })
    .unwrap();
    let end = s
        .on_message(Message::FetchEnd {
            blocks: 1,
            bytes: 3,
            rows: 5,
            missing_maps: vec![],
        })
        .unwrap();
    assert_eq!(
        end,
        FetchStep::End {
            blocks: 1,
            bytes: 3,
            rows: 5,
            missing_maps: vec![]
        }
    );
    assert!(s.is_done());
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(kind in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::decode(kind, Bytes::from(body));
    }

    #[test]
    fn mutated_frames_never_panic(index in 0..all_messages().len(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut frame = encode_frame(&all_messages()[index]);
        for (at, x) in flips {
            let i = at % frame.len();
            frame[i] ^= x;
        }
        let head: [u8; FRAME_HEADER_LEN] = frame[..FRAME_HEADER_LEN].try_into().unwrap();
        if let Ok(h) = FrameHeader::decode(head, &Limits::default()) {
            let body = &frame[FRAME_HEADER_LEN..];
            let _ = h.decode_body(Bytes::copy_from_slice(&body[..body.len().min(h.body_len as usize)]));
        }
    }
}

/// One message of a generated session: any message of every kind, or a fetch block or
/// end with generated fields (so totals sometimes match and sometimes do not).
fn session_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        proptest::sample::select(all_messages()),
        (0u32..6, 0usize..4).prop_map(|(partition, len)| Message::FetchBlock {
            partition,
            block: Bytes::from(vec![7u8; len]),
        }),
        (0u64..4, 0u64..8).prop_map(|(blocks, bytes)| Message::FetchEnd {
            blocks,
            bytes,
            rows: 0,
            missing_maps: vec![],
        }),
        Just(Message::PushBatch { ipc: Bytes::new() }),
        Just(Message::PushEnd { sums: vec![] }),
        (0u32..6).prop_map(|partition| Message::FetchSums {
            partition,
            sums: vec![],
        }),
    ]
}

proptest! {
    /// Any order of any messages: the push session yields exactly start, batches, end
    /// (nothing after end), and a fetch session that ends has seen exactly the blocks
    /// and bytes the end reports, all inside its partition range.
    #[test]
    fn sessions_hold_their_invariants_for_any_message_order(
        messages in proptest::collection::vec(session_message(), 0..24),
        start in 0u32..4,
        width in 0u32..4,
    ) {
        let mut push: Option<PushSession> = None;
        let mut pushed = Vec::new();
        for m in &messages {
            match (&mut push, m) {
                (None, Message::PushStart(start)) => {
                    if let Ok(session) = PushSession::start(start, 1 << 20) {
                        push = Some(session);
                        pushed.push('s');
                    }
                }
                (None, _) => {}
                (Some(session), m) => {
                    if let Ok(step) = session.on_message(m.clone()) {
                        pushed.push(match step {
                            PushStep::Batch(_) => 'b',
                            PushStep::End(_) => 'e',
                        });
                    }
                }
            }
        }
        let shape: String = pushed.iter().collect();
        let valid = shape.is_empty()
            || (shape.starts_with('s')
                && shape[1..].trim_end_matches('e').chars().all(|c| c == 'b')
                && shape.matches('e').count() <= 1);
        prop_assert!(valid, "push steps {shape}");

        let end = start + width;
        let mut fetch = FetchSession::new(start, end);
        let (mut blocks, mut bytes) = (0u64, 0u64);
        for m in &messages {
            let done_before = fetch.is_done();
            match fetch.on_message(m.clone()) {
                Ok(FetchStep::Block { partition, block }) => {
                    prop_assert!(!done_before);
                    prop_assert!((start..end).contains(&partition));
                    blocks += 1;
                    bytes += block.len() as u64;
                }
                Ok(FetchStep::End { blocks: b, bytes: n, .. }) => {
                    prop_assert_eq!((b, n), (blocks, bytes));
                    prop_assert!(fetch.is_done());
                }
                Ok(_) => prop_assert!(!done_before),
                Err(_) => {}
            }
        }
    }
}
