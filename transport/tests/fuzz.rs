//! The frame decoder and the authkey handshake fed arbitrary and mutated bytes: typed errors, no panic, hang or allocation for a length prefix.
//!
//! The bodies are `multiproc_transport::fuzz`'s, the same the cargo-fuzz targets in
//! `fuzz/` run; here they run a bounded number of cases on stable in `cargo test`.

use std::time::{Duration, Instant};

use multiproc_transport::auth::{AuthError, CHALLENGE, WELCOME};
use multiproc_transport::frame::header;
use multiproc_transport::fuzz::{self, FUZZ_HANDSHAKE_TIMEOUT, Role};
use multiproc_transport::{Error, FrameDecoder, FrameError, MAX_FRAME_LEN};
use proptest::prelude::*;

#[path = "../../tests/support/peak_alloc.rs"]
mod peak_alloc;

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// What a decoder may allocate beyond what it was given: its read chunk (16 KiB) and
/// the doubling of a growing buffer, with room to spare.
const SLACK: usize = 64 << 10;
/// The first growth of a reading decoder's buffer for a frame whose header is in: it
/// grows by at least this much at a time, to keep big frames to few reads, and the
/// vector's own doubling may make that twice as much.
const GROW_STEP: usize = 256 << 10;

/// A frame stream of `payloads`, as a peer writes it.
fn encode(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        let mut h = [0u8; 12];
        let n = header(p.len(), &mut h);
        out.extend_from_slice(&h[..n]);
        out.extend_from_slice(p);
    }
    out
}

/// A header announcing `len` bytes: the 4-byte form, or −1 and 8 bytes when `long`.
fn announce(len: u64, long: bool) -> Vec<u8> {
    if long {
        let mut h = (-1i32).to_be_bytes().to_vec();
        h.extend_from_slice(&len.to_be_bytes());
        h
    } else {
        (len as u32).to_be_bytes().to_vec()
    }
}

/// Ways a valid stream goes bad on the wire.
#[derive(Debug, Clone)]
enum Mutation {
    /// XORs the byte at this position (modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Cuts the stream to this length (modulo the length + 1).
    Truncate(usize),
    /// Puts a header of an absurd length at this position (modulo the length + 1).
    Absurd(usize, u64, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let absurd_len = prop_oneof![
        Just(0x7fff_ffffu64),
        Just(0xffff_ffffu64),
        Just(4 << 30),
        Just(u64::MAX),
        Just(1 << 62),
        any::<u64>(),
    ];
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), absurd_len, any::<bool>())
            .prop_map(|(at, len, long)| Mutation::Absurd(at, len, long)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match *m {
            Mutation::Flip(at, mask) if !bytes.is_empty() => {
                let i = at % bytes.len();
                bytes[i] ^= mask;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Absurd(at, len, long) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, announce(len, long));
            }
        }
    }
    bytes
}

fn valid_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..6).prop_map(|p| encode(&p))
}

/// Checks what the decoder made of `stream`: frames within the limit and no more bytes
/// than it was given, and only the errors a pure decoder has (never `Io`).
fn check_frames(stream: &[u8], out: &[Result<Vec<u8>, FrameError>], max: usize) {
    let mut frame_bytes = 0;
    for r in out {
        match r {
            Ok(f) => {
                assert!(f.len() <= max);
                frame_bytes += f.len();
            }
            Err(FrameError::TooLarge { len, .. }) => assert!(*len > max as u64),
            Err(FrameError::BadLength(n)) => assert!(*n < -1),
            Err(FrameError::Truncated { expected, got }) => assert!(got < expected),
            Err(e) => panic!("a pure decoder reported {e:?}"),
        }
    }
    assert!(frame_bytes <= stream.len());
}

/// The frame limit [`fuzz::frame_decoder`] reads from its first byte.
fn limit_of(data: &[u8]) -> usize {
    match data.first() {
        None | Some(0) => MAX_FRAME_LEN,
        Some(&m) => usize::from(m),
    }
}

/// Feeds `stream` through [`FrameDecoder::push`] only, and returns the largest
/// allocation that made.
fn largest_when_pushed(stream: &[u8], max: usize) -> usize {
    peak_alloc::largest_allocation(|| {
        let mut d = FrameDecoder::new(max);
        for piece in stream.chunks(7) {
            d.push(piece);
            while let Ok(Some(_)) = d.next_frame() {}
        }
        let _ = d.finish();
    })
    .1
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frame_decoder_takes_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let (out, largest) = peak_alloc::largest_allocation(|| fuzz::frame_decoder(&data));
        let max = limit_of(&data);
        check_frames(data.get(2..).unwrap_or(&[]), &out, max);
        // Reading in place grows with the bytes (see
        // `read_buf_grows_with_the_bytes_not_the_prefix`).
        prop_assert!(largest <= 2 * (data.len() + GROW_STEP) + SLACK, "{largest} bytes allocated");
        let stream = data.get(2..).unwrap_or(&[]);
        let pushed = largest_when_pushed(stream, max);
        prop_assert!(pushed <= 2 * stream.len() + SLACK, "{pushed} bytes allocated by push");
    }

    #[test]
    fn frame_decoder_takes_mutated_valid_streams(
        stream in valid_stream(),
        mutations in prop::collection::vec(mutation(), 1..4),
        max in prop_oneof![Just(MAX_FRAME_LEN), 1usize..80],
        chunk in 1usize..40,
    ) {
        let stream = mutate(stream, &mutations);
        let (out, largest) =
            peak_alloc::largest_allocation(|| fuzz::decode_frames(&stream, max, chunk));
        check_frames(&stream, &out, max);
        prop_assert!(largest <= 2 * (stream.len() + GROW_STEP) + SLACK, "{largest} bytes allocated");
        let pushed = largest_when_pushed(&stream, max);
        prop_assert!(pushed <= 2 * stream.len() + SLACK, "{pushed} bytes allocated by push");
    }

    #[test]
    fn handshake_takes_arbitrary_peer_bytes(
        answer in any::<bool>(),
        peer in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let role = if answer { Role::Answer } else { Role::Deliver };
        let started = Instant::now();
        let out = fuzz::handshake_with(role, &peer, true, FUZZ_HANDSHAKE_TIMEOUT);
        check_handshake(role, &out, started);
    }

    #[test]
    fn handshake_takes_mutated_valid_messages(
        answer in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 1..4),
        tail in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        // What an honest but keyless peer would send: a challenge (to a client) or a
        // well-formed answer (to a listener), then a welcome.
        let role = if answer { Role::Answer } else { Role::Deliver };
        let first = match role {
            Role::Answer => [CHALLENGE, b"{sha256}", &tail].concat(),
            Role::Deliver => [&b"{sha256}"[..], &tail].concat(),
        };
        let peer = mutate(encode(&[first, WELCOME.to_vec()]), &mutations);
        let started = Instant::now();
        let (out, largest) = peak_alloc::largest_allocation(|| {
            fuzz::handshake_with(role, &peer, true, FUZZ_HANDSHAKE_TIMEOUT)
        });
        check_handshake(role, &out, started);
        prop_assert!(largest <= SLACK, "{largest} bytes allocated");
    }
}

/// A handshake ended in time, with a typed error unless it could honestly succeed: a
/// client can be welcomed by a peer that never proves the key, a listener cannot.
fn check_handshake(role: Role, out: &Result<(), Error>, started: Instant) {
    let took = started.elapsed();
    assert!(
        took < FUZZ_HANDSHAKE_TIMEOUT + Duration::from_secs(2),
        "the handshake took {took:?}"
    );
    match out {
        Ok(()) => assert_eq!(role, Role::Answer, "a keyless peer passed the challenge"),
        Err(Error::Auth(_) | Error::Frame(_) | Error::Eof | Error::Io(_)) => {}
        Err(e) => panic!("unexpected handshake error {e:?}"),
    }
}

#[test]
fn a_huge_long_prefix_in_nine_bytes_costs_nothing() {
    for max in [MAX_FRAME_LEN, 10] {
        let stream = [&announce(4 << 30, true)[..], &[7u8; 3]].concat();
        let started = Instant::now();
        let (out, largest) =
            peak_alloc::largest_allocation(|| fuzz::decode_frames(&stream[..9], max, 9));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            largest <= SLACK,
            "{largest} bytes allocated for a 9-byte input"
        );
        assert!(
            matches!(
                out[..],
                [Err(FrameError::Truncated {
                    expected: 8,
                    got: 5
                })]
            ),
            "{out:?}"
        );
        let (out, largest) =
            peak_alloc::largest_allocation(|| fuzz::decode_frames(&stream, max, 1));
        assert!(
            largest <= SLACK,
            "{largest} bytes allocated for a 15-byte input"
        );
        assert!(
            matches!(
                out[..],
                [
                    Err(FrameError::TooLarge { len, .. }),
                    Err(FrameError::Truncated { got: 3, .. })
                ] if len == 4 << 30
            ),
            "{out:?}"
        );
    }
}

#[test]
fn a_prefix_of_i32_max_costs_nothing() {
    let stream = [&announce(0x7fff_ffff, false)[..], b"hello"].concat();
    let (out, largest) =
        peak_alloc::largest_allocation(|| fuzz::decode_frames(&stream, MAX_FRAME_LEN, 4));
    assert!(largest <= SLACK, "{largest} bytes allocated");
    assert!(
        matches!(
            out[..],
            [
                Err(FrameError::TooLarge {
                    len: 0x7fff_ffff,
                    ..
                }),
                Err(FrameError::Truncated { got: 5, .. })
            ]
        ),
        "{out:?}"
    );
}

#[test]
fn pushing_a_prefix_under_the_limit_grows_only_with_the_bytes() {
    let stream = [&announce(MAX_FRAME_LEN as u64, false)[..], &[1u8; 5]].concat();
    let largest = largest_when_pushed(&stream, MAX_FRAME_LEN);
    assert!(largest <= SLACK, "{largest} bytes allocated");
}

/// Reading in place (what a `Connection` does) grows the buffer with the bytes that
/// arrive, never to the announced length: nine bytes claiming the limit cost one
/// growth step, not the limit.
#[test]
fn read_buf_grows_with_the_bytes_not_the_prefix() {
    let stream = [&announce(MAX_FRAME_LEN as u64, false)[..], &[1u8; 5]].concat();
    let (out, largest) =
        peak_alloc::largest_allocation(|| fuzz::decode_frames(&stream, MAX_FRAME_LEN, 9));
    assert!(largest <= GROW_STEP + SLACK, "{largest} bytes allocated");
    assert!(
        matches!(out[..], [Err(FrameError::Truncated { got: 5, .. })]),
        "{out:?}"
    );
}

#[test]
fn a_silent_peer_times_out_the_handshake() {
    // Nothing, half a header, and a header that promises more than is sent.
    let partials: [&[u8]; 3] = [b"", &[0, 0], &[0, 0, 0, 200, b'#']];
    for role in [Role::Deliver, Role::Answer] {
        for peer in partials {
            let started = Instant::now();
            let out = fuzz::handshake_with(role, peer, false, FUZZ_HANDSHAKE_TIMEOUT);
            assert!(
                matches!(out, Err(Error::Auth(AuthError::Timeout(_)))),
                "{role:?} {peer:?}: {out:?}"
            );
            assert!(started.elapsed() < FUZZ_HANDSHAKE_TIMEOUT + Duration::from_secs(2));
        }
    }
}

#[test]
fn an_absurd_prefix_in_the_handshake_is_refused_without_allocating() {
    for role in [Role::Deliver, Role::Answer] {
        for (len, long) in [(0x7fff_ffff, false), (u64::MAX, true), (4 << 30, true)] {
            let peer = announce(len, long);
            let (out, largest) = peak_alloc::largest_allocation(|| {
                fuzz::handshake_with(role, &peer, false, FUZZ_HANDSHAKE_TIMEOUT)
            });
            assert!(
                matches!(out, Err(Error::Frame(FrameError::TooLarge { .. }))),
                "{role:?} {len}: {out:?}"
            );
            assert!(largest <= SLACK, "{largest} bytes allocated");
        }
    }
}

#[test]
fn the_fuzz_entry_points_take_empty_and_tiny_inputs() {
    for data in [&[][..], &[0], &[1], &[0, 0], &[3, 0, 0, 0, 0, 1]] {
        let out = fuzz::frame_decoder(data);
        check_frames(data.get(2..).unwrap_or(&[]), &out, limit_of(data));
        let started = Instant::now();
        let out = fuzz::handshake(data);
        let role = if data.first().is_some_and(|b| b & 1 == 1) {
            Role::Answer
        } else {
            Role::Deliver
        };
        check_handshake(role, &out, started);
        assert!(out.is_err(), "{data:?} passed the handshake");
    }
}
