//! The manager's request decoder and the forkserver's request reader fed arbitrary and mutated bytes: typed errors, no panic, hang or allocation for a length prefix.
//!
//! The bodies are `multiproc_supervisor::fuzz`'s, the same the cargo-fuzz targets in
//! `fuzz/` run; here they run a bounded number of cases on stable in `cargo test`.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use multiproc_core::{CodecError, codec};
use multiproc_supervisor::ManagerError;
use multiproc_supervisor::fuzz;
use multiproc_transport::FrameError;
use proptest::prelude::*;
use serde::Serialize;
use serde_bytes::ByteBuf;

#[path = "../../tests/support/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What one request may allocate whatever its bytes claim: serde reserves at most
/// 1 MiB for a sequence of unseen length, plus slack.
const ALLOC_BOUND: usize = (1 << 20) + (64 << 10);

/// A request that waits gives up within the server's 50 ms watch of a hung-up
/// caller; this is that with a wide margin for a loaded machine.
const TIME_BOUND: Duration = Duration::from_secs(2);

/// The manager's wire request, as a proxy encodes it (`manager/wire.rs`).
#[derive(Debug, Clone, Serialize)]
enum Request {
    Hello,
    Create {
        typeid: String,
        args: ByteBuf,
        owner: u64,
    },
    Call {
        id: u64,
        method: String,
        args: ByteBuf,
    },
    Publish {
        name: String,
        id: u64,
    },
    Lookup {
        name: String,
    },
}

/// The forkserver's request (`forkserver.rs`).
#[derive(Debug, Clone, Serialize)]
struct Fork {
    logical_parent: u32,
    env: Vec<(String, String)>,
}

const METHODS: [&str; 24] = [
    "set",
    "get",
    "remove",
    "contains",
    "len",
    "keys",
    "values",
    "items",
    "clear",
    "update",
    "append",
    "extend",
    "insert",
    "pop",
    "reverse",
    "del",
    "put",
    "qsize",
    "task_done",
    "join",
    "acquire",
    "release",
    "locked",
    "wait",
];

/// Arguments of the shapes the built-in methods take, with the extreme values.
fn args() -> impl Strategy<Value = Vec<u8>> {
    let enc = |r: Result<Vec<u8>, CodecError>| r.expect("arguments encode");
    let timeout = prop_oneof![
        Just(None),
        Just(Some(u64::MAX)),
        Just(Some(0)),
        any::<Option<u64>>()
    ];
    let index = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1i64), any::<i64>()];
    let bytes = || prop::collection::vec(any::<u8>(), 0..8).prop_map(ByteBuf::from);
    prop_oneof![
        Just(enc(codec::encode(&()))),
        (any::<bool>(), timeout.clone()).prop_map(move |a| enc(codec::encode(&a))),
        timeout.clone().prop_map(move |t| enc(codec::encode(&(t,)))),
        (bytes(), any::<bool>(), timeout).prop_map(move |a| enc(codec::encode(&a))),
        index.clone().prop_map(move |i| enc(codec::encode(&(i,)))),
        prop::option::of(index.clone()).prop_map(move |i| enc(codec::encode(&(i,)))),
        (index, bytes()).prop_map(move |a| enc(codec::encode(&a))),
        (bytes(), bytes()).prop_map(move |a| enc(codec::encode(&a))),
        ("[a-z]{0,4}", bytes()).prop_map(move |a| enc(codec::encode(&a))),
        prop::collection::vec((bytes(), bytes()), 0..3)
            .prop_map(move |v| enc(codec::encode(&(v,)))),
        any::<u64>().prop_map(move |n| enc(codec::encode(&(n,)))),
        prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let method = prop_oneof![
        prop::sample::select(&METHODS[..]).prop_map(String::from),
        "[a-z_]{0,8}",
    ];
    let typeid = prop_oneof![
        prop::sample::select(
            &[
                "dict",
                "list",
                "namespace",
                "queue",
                "lock",
                "event",
                "value"
            ][..]
        )
        .prop_map(String::from),
        "[a-z]{0,6}",
    ];
    prop_oneof![
        Just(Request::Hello),
        (typeid, args(), 0u64..4).prop_map(|(typeid, a, owner)| Request::Create {
            typeid,
            args: ByteBuf::from(a),
            owner,
        }),
        (0u64..9, method, args()).prop_map(|(id, method, a)| Request::Call {
            id,
            method,
            args: ByteBuf::from(a)
        }),
        ("[a-z]{0,4}", 0u64..9).prop_map(|(name, id)| Request::Publish { name, id }),
        "[a-z]{0,4}".prop_map(|name| Request::Lookup { name }),
    ]
}

/// Serves `data` as one request, checking it ends in time and memory.
fn serve(data: &[u8]) -> Result<(), ManagerError> {
    let started = Instant::now();
    let (out, largest) = peak_alloc::largest_allocation(|| fuzz::manager_request(data));
    assert!(
        started.elapsed() < TIME_BOUND,
        "took {:?}",
        started.elapsed()
    );
    assert!(largest <= ALLOC_BOUND, "{largest} bytes allocated");
    out
}

/// Reads `data` as a forkserver request, checking it ends in time and memory, and
/// that a failure carries the typed error its kind promises.
fn read_fork(data: &[u8]) -> std::io::Result<()> {
    let started = Instant::now();
    let (out, largest) = peak_alloc::largest_allocation(|| fuzz::forkserver_request(data));
    assert!(started.elapsed() < TIME_BOUND);
    assert!(largest <= ALLOC_BOUND, "{largest} bytes allocated");
    if let Err(e) = &out {
        let inner = e.get_ref();
        match e.kind() {
            ErrorKind::InvalidData => assert!(
                inner.is_some_and(|i| i.is::<CodecError>()
                    || matches!(i.downcast_ref(), Some(FrameError::TooLarge { .. }))),
                "{e:?}"
            ),
            // From the header (nothing inside) or the body (how much arrived).
            ErrorKind::UnexpectedEof => assert!(
                inner
                    .is_none_or(|i| matches!(i.downcast_ref(), Some(FrameError::Truncated { .. }))),
                "{e:?}"
            ),
            _ => panic!("unexpected error {e:?}"),
        }
    }
    out
}

/// A forkserver frame: the 4-byte big-endian length, then the body.
fn fork_frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_be_bytes()[..], body].concat()
}

fn fork() -> impl Strategy<Value = Fork> {
    (
        any::<u32>(),
        prop::collection::vec(("[A-Z_]{1,6}", ".{0,6}"), 0..4),
    )
        .prop_map(|(logical_parent, env)| Fork {
            logical_parent,
            env,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn manager_takes_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..128)) {
        // Bytes that happen to be a request are served like any other; `serve` checks
        // the time and memory either way.
        let _ = serve(&data);
    }

    #[test]
    fn manager_serves_well_formed_requests_with_extreme_arguments(r in request()) {
        let bytes = codec::encode(&r).expect("a request encodes");
        let out = serve(&bytes);
        prop_assert!(!matches!(out, Err(ManagerError::Decode(_))), "{r:?}: {out:?}");
    }

    #[test]
    fn manager_takes_mutated_requests(
        r in request(),
        flips in prop::collection::vec((any::<usize>(), 1u8..), 1..3),
        cut in any::<usize>(),
    ) {
        let mut bytes = codec::encode(&r).expect("a request encodes");
        for (at, mask) in flips {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = serve(&bytes);
    }

    #[test]
    fn forkserver_takes_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..128)) {
        // `read_fork` checks the time, memory and the error's type.
        let _ = read_fork(&data);
    }

    #[test]
    fn forkserver_reads_well_formed_requests(f in fork(), split in 0u8..4) {
        let frame = fork_frame(&codec::encode(&f).expect("a request encodes"));
        let data = [&[split][..], &frame].concat();
        prop_assert!(read_fork(&data).is_ok());
    }

    #[test]
    fn forkserver_takes_mutated_requests(
        f in fork(),
        split in any::<u8>(),
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..3),
        cut in any::<usize>(),
        prefix in prop::option::of(prop_oneof![
            Just(u32::MAX), Just(0x7fff_ffff), Just(0x00ff_ffff), Just(16 << 20), any::<u32>()
        ]),
    ) {
        let mut frame = fork_frame(&codec::encode(&f).expect("a request encodes"));
        if let Some(len) = prefix {
            frame[..4].copy_from_slice(&len.to_be_bytes());
        }
        for (at, mask) in flips {
            let i = at % frame.len();
            frame[i] ^= mask;
        }
        frame.truncate(cut % (frame.len() + 1));
        let _ = read_fork(&[&[split][..], &frame].concat());
    }
}

#[test]
fn manager_decode_errors_are_typed() {
    for data in [
        &[][..],
        &[0xc1],
        &[0xdd, 0xff, 0xff, 0xff, 0xff],
        &[0x91; 1000],
    ] {
        assert!(
            matches!(serve(data), Err(ManagerError::Decode(_))),
            "{data:?}"
        );
    }
}

#[test]
fn manager_waits_with_an_endless_timeout_give_up_on_a_hung_up_caller() {
    // u64::MAX milliseconds is 585 million years: a deadline, not a panic, and the
    // caller's hang-up still ends the wait.
    let calls = [
        (4, "get", codec::encode(&(true, Some(u64::MAX)))),
        (
            4,
            "put",
            codec::encode(&(ByteBuf::new(), true, Some(u64::MAX))),
        ),
        (4, "join", codec::encode(&(Some(u64::MAX),))),
        (6, "wait", codec::encode(&(Some(u64::MAX),))),
        (6, "wait", codec::encode(&(None::<u64>,))),
        (5, "acquire", codec::encode(&(true, Some(u64::MAX)))),
    ];
    for (id, method, a) in calls {
        let r = Request::Call {
            id,
            method: method.into(),
            args: ByteBuf::from(a.expect("arguments encode")),
        };
        let out = serve(&codec::encode(&r).expect("a request encodes"));
        assert!(
            matches!(out, Ok(()) | Err(ManagerError::Gone(_))),
            "{method}: {out:?}"
        );
    }
}

#[test]
fn manager_serves_a_plain_request() {
    // The mirrored wire format is right: a request that must succeed does.
    let r = Request::Call {
        id: 7,
        method: "get".into(),
        args: ByteBuf::from(codec::encode(&()).expect("arguments encode")),
    };
    assert!(serve(&codec::encode(&r).expect("a request encodes")).is_ok());
    let r = Request::Call {
        id: 2,
        method: "get".into(),
        args: ByteBuf::from(codec::encode(&(i64::MIN,)).expect("arguments encode")),
    };
    assert!(matches!(
        serve(&codec::encode(&r).expect("a request encodes")),
        Err(ManagerError::Index { .. })
    ));
}

#[test]
fn forkserver_length_prefixes_cost_nothing_before_their_bytes() {
    // Over the limit: refused from the header alone.
    let err = read_fork(&[3, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]).unwrap_err();
    assert!(
        matches!(
            err.get_ref().and_then(|i| i.downcast_ref()),
            Some(FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            })
        ),
        "{err:?}"
    );
    // Under the limit but far more than is sent: the buffer grew only with the bytes.
    let err = read_fork(&[0, 0x00, 0xff, 0xff, 0xff, 1, 2, 3, 4]).unwrap_err();
    assert!(
        matches!(
            err.get_ref().and_then(|i| i.downcast_ref()),
            Some(FrameError::Truncated {
                expected: 0x00ff_ffff,
                got: 4
            })
        ),
        "{err:?}"
    );
}
