//! The packet and envelope decoder fed arbitrary and mutated bytes: a value or a `CodecError`, no panic, hang or allocation for a length prefix.
//!
//! The body is `multiproc_core::fuzz::packet`, the same the cargo-fuzz target in
//! `fuzz/` runs; here it runs a bounded number of cases on stable in `cargo test`.

use std::time::{Duration, Instant};

use multiproc_core::CodecError;
use multiproc_core::fuzz::{self, Decoded};
use multiproc_core::{
    Body, EntryKind, Envelope, ExitReport, Hello, Identity, Limits, LogField, LogRecord, LogSpan,
    LogValue, PROTOCOL_VERSION, Packet, codec,
};
use proptest::prelude::*;

#[path = "../../tests/support/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What decoding may allocate whatever the input claims: serde reserves at most
/// 1 MiB for a sequence whose length it has not seen yet, plus slack.
const ALLOC_BOUND: usize = (1 << 20) + (64 << 10);

/// MessagePack headers that claim far more than follows: array, map, bin and str of
/// 2^32 − 1 entries or bytes.
const ABSURD: [&[u8]; 6] = [
    &[0xdd, 0xff, 0xff, 0xff, 0xff],
    &[0xdf, 0xff, 0xff, 0xff, 0xff],
    &[0xc6, 0xff, 0xff, 0xff, 0xff],
    &[0xdb, 0xff, 0xff, 0xff, 0xff],
    &[0xdc, 0xff, 0xff],
    &[0xc6, 0x7f, 0xff, 0xff, 0xff],
];

fn identity() -> impl Strategy<Value = Identity> {
    prop::collection::vec(any::<u32>(), 0..4).prop_map(Identity::from_path)
}

fn envelope() -> impl Strategy<Value = Envelope> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..24);
    let body = prop_oneof![
        bytes().prop_map(Body::Call),
        bytes().prop_map(Body::Cast),
        bytes().prop_map(Body::Reply),
        bytes().prop_map(Body::Service),
    ];
    (identity(), identity(), any::<u64>(), body).prop_map(|(to, from, corr, body)| Envelope {
        to,
        from,
        corr,
        body,
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        identity(),
        ".{0,8}",
        prop::collection::vec(any::<u8>(), 0..16),
        any::<(u32, Option<u8>, Option<u64>, bool)>(),
    )
        .prop_map(
            |(identity, name, args, (fds, log_level, secs, daemon))| Hello {
                identity,
                name: name.clone(),
                parent_name: name,
                parent_identity: Identity::root(),
                daemon,
                kind: EntryKind::Function,
                entry: "entry".into(),
                args,
                fds,
                log_level,
                limits: Limits::default(),
                heartbeat: secs.map(Duration::from_secs),
                rings: log_level.map(u32::from),
            },
        )
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        hello().prop_map(|h| Packet::Hello {
            protocol: PROTOCOL_VERSION,
            build_id: 7,
            body: codec::encode(&h).expect("a Hello encodes"),
        }),
        any::<u32>().prop_map(|pid| Packet::Ready { pid }),
        envelope().prop_map(Packet::Envelope),
        Just(Packet::Stop),
        Just(Packet::Heartbeat),
        (any::<u8>(), ".{0,12}", any::<i64>(), any::<Option<u32>>()).prop_map(
            |(level, message, n, line)| Packet::Log(Box::new(LogRecord {
                level,
                target: "t".into(),
                name: "event".into(),
                module_path: None,
                file: Some("f.rs".into()),
                line,
                process: "p".into(),
                fields: vec![
                    LogField {
                        name: "message".into(),
                        value: LogValue::Text(message),
                    },
                    LogField {
                        name: "n".into(),
                        value: LogValue::I64(n),
                    },
                ],
                spans: vec![LogSpan {
                    name: "s".into(),
                    target: "t".into(),
                    level: 3,
                    fields: vec![LogField {
                        name: "ok".into(),
                        value: LogValue::Bool(true),
                    }],
                }],
                caller: line.map(u64::from),
            }))
        ),
        ".{0,12}".prop_map(|message| Packet::Exiting(ExitReport::Failed { message })),
    ]
}

/// Decodes `data` with [`fuzz::packet`], checking it ends in time and allocates no
/// more than [`ALLOC_BOUND`] whatever the bytes claim.
fn decode(data: &[u8]) -> Decoded {
    let started = Instant::now();
    let (out, largest) = peak_alloc::largest_allocation(|| fuzz::packet(data));
    assert!(largest <= ALLOC_BOUND, "{largest} bytes allocated");
    assert!(started.elapsed() < Duration::from_secs(2));
    out
}

/// A failed decode is a [`CodecError::Decode`] that names the type it expected.
fn check_error(out: Decoded) {
    if let Decoded::NotPacket(e, _) = out {
        assert!(
            matches!(&e, CodecError::Decode { type_name, .. } if type_name.ends_with("Packet")),
            "{e:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_or_give_a_codec_error(data in prop::collection::vec(any::<u8>(), 0..256)) {
        // Time, memory and the round trip of a value are checked on the way.
        check_error(decode(&data));
    }

    #[test]
    fn valid_packets_decode_to_themselves(p in packet()) {
        let bytes = codec::encode(&p).expect("a packet encodes");
        match decode(&bytes) {
            Decoded::Packet(got, hello) => {
                prop_assert_eq!(&got, &p);
                prop_assert_eq!(hello.is_some(), matches!(p, Packet::Hello { .. }));
                prop_assert!(hello.is_none_or(|h| h.is_ok()));
            }
            Decoded::NotPacket(e, _) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn mutated_packets_decode_or_give_a_codec_error(
        p in packet(),
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..3),
        cut in any::<usize>(),
        absurd in prop::option::of((any::<usize>(), 0..ABSURD.len())),
    ) {
        let mut bytes = codec::encode(&p).expect("a packet encodes");
        for (at, mask) in flips {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
        if let Some((at, which)) = absurd {
            let i = at % (bytes.len() + 1);
            bytes.splice(i..i, ABSURD[which].iter().copied());
        }
        bytes.truncate(cut % (bytes.len() + 1));
        check_error(decode(&bytes));
    }
}

#[test]
fn absurd_lengths_alone_are_codec_errors() {
    for prefix in ABSURD {
        for data in [prefix.to_vec(), [prefix, &[0u8; 4][..]].concat()] {
            let Decoded::NotPacket(e, envelope) = decode(&data) else {
                panic!("{data:?} decoded as a packet");
            };
            assert!(e.to_string().contains("Packet"), "{e}");
            assert!(envelope.is_err());
        }
    }
}

#[test]
fn a_hello_with_an_absurd_body_is_a_codec_error_for_the_body() {
    for prefix in ABSURD {
        let p = Packet::Hello {
            protocol: PROTOCOL_VERSION,
            build_id: 1,
            body: prefix.to_vec(),
        };
        let bytes = codec::encode(&p).expect("a packet encodes");
        let Decoded::Packet(_, Some(Err(e))) = decode(&bytes) else {
            panic!("{prefix:?}: the body decoded");
        };
        assert!(e.to_string().contains("Hello"), "{e}");
    }
}

#[test]
fn deep_nesting_is_a_codec_error_not_a_stack_overflow() {
    // 100 000 nested one-element arrays: a recursive decoder without a depth limit
    // would overflow the test thread's stack.
    let data = vec![0x91u8; 100_000];
    assert!(matches!(decode(&data), Decoded::NotPacket(..)));
}
