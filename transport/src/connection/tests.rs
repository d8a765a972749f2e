//! Tests of the two connection types.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::{FrameError, blocking_pipe, pipe};

/// Writes raw bytes to a connection's fd, bypassing framing.
fn raw_write(c: &BlockingConnection, bytes: &[u8]) {
    let mut done = 0;
    while done < bytes.len() {
        done += rustix::io::write(c.as_fd().unwrap(), &bytes[done..]).unwrap();
    }
}

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn connections_are_send_sync_and_static() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<BlockingConnection>();
}

#[test]
fn blocking_round_trips_between_threads() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    let echo = std::thread::spawn(move || {
        loop {
            match b.recv::<(u32, String)>() {
                Ok((n, s)) => b.send(&(n * 2, s)).unwrap(),
                Err(Error::Eof) => return,
                Err(e) => panic!("{e}"),
            }
        }
    });
    for n in 0..1000u32 {
        a.send(&(n, format!("msg {n}"))).unwrap();
        assert_eq!(
            a.recv::<(u32, String)>().unwrap(),
            (n * 2, format!("msg {n}"))
        );
    }
    a.close();
    echo.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_round_trips_between_tasks() {
    let (mut a, mut b) = pipe(true).unwrap();
    let echo = tokio::spawn(async move {
        while let Ok(n) = b.recv::<u64>().await {
            b.send(&(n + 1)).await.unwrap();
        }
    });
    for n in 0..1000u64 {
        a.send(&n).await.unwrap();
        assert_eq!(a.recv::<u64>().await.unwrap(), n + 1);
    }
    drop(a);
    echo.await.unwrap();
}

#[test]
fn big_messages_cross_both_kinds_of_pipe() {
    for duplex in [true, false] {
        let (mut r, mut w) = blocking_pipe(duplex).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let expected = big.clone();
        let writer = std::thread::spawn(move || {
            w.send_bytes(&big).unwrap();
            w.send(&big).unwrap();
            w.send_bytes(b"small").unwrap();
        });
        assert_eq!(r.recv_bytes().unwrap(), expected);
        assert_eq!(r.recv::<Vec<u8>>().unwrap(), expected);
        assert_eq!(r.recv_bytes().unwrap(), b"small");
        writer.join().unwrap();
    }
}

#[tokio::test]
async fn async_big_messages_interleave_with_a_blocking_peer() {
    let (mut a, b) = pipe(true).unwrap();
    let mut b = BlockingConnection::from(b);
    let big = vec![0x5Au8; 2_000_000];
    let expected = big.clone();
    let peer = std::thread::spawn(move || {
        let got = b.recv_bytes().unwrap();
        b.send_bytes(&got).unwrap();
    });
    a.send_bytes(&big).await.unwrap();
    assert_eq!(a.recv_bytes().await.unwrap(), expected);
    tokio::task::spawn_blocking(move || peer.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn undecodable_message_is_consumed_and_the_next_arrives() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    a.send(&"text").unwrap();
    a.send(&(1u8, 2u8)).unwrap();
    let err = b.recv::<u64>().unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
    assert_eq!(b.recv::<(u8, u8)>().unwrap(), (1, 2));
}

#[test]
fn garbage_on_the_wire_gives_typed_errors_then_the_valid_message() {
    let (a, mut b) = blocking_pipe(true).unwrap();
    b.set_max_frame_len(64);
    let mut bytes = Vec::new();
    // A valid length prefix whose payload is a reserved msgpack byte.
    bytes.extend_from_slice(&[0, 0, 0, 3, 0xC1, 0xC1, 0xC1]);
    // A frame over the receiver's limit, payload included.
    bytes.extend_from_slice(&100i32.to_be_bytes());
    bytes.extend_from_slice(&[0xEE; 100]);
    // A frame that is valid msgpack, of another type than expected.
    let text = multiproc_core::codec::encode("not a pair").unwrap();
    bytes.extend_from_slice(&(text.len() as i32).to_be_bytes());
    bytes.extend_from_slice(&text);
    // Finally a valid message.
    let good = multiproc_core::codec::encode(&(7u8, "ok")).unwrap();
    bytes.extend_from_slice(&(good.len() as i32).to_be_bytes());
    bytes.extend_from_slice(&good);
    raw_write(&a, &bytes);

    assert!(matches!(b.recv::<(u8, String)>(), Err(Error::Decode(_))));
    assert!(matches!(
        b.recv::<(u8, String)>(),
        Err(Error::Frame(FrameError::TooLarge { len: 100, max: 64 }))
    ));
    assert!(matches!(b.recv::<(u8, String)>(), Err(Error::Decode(_))));
    assert_eq!(b.recv::<(u8, String)>().unwrap(), (7, "ok".to_string()));
}

#[test]
fn bad_length_prefix_is_fatal() {
    let (a, mut b) = blocking_pipe(true).unwrap();
    raw_write(&a, &(-2i32).to_be_bytes());
    for _ in 0..2 {
        assert!(matches!(
            b.recv_bytes(),
            Err(Error::Frame(FrameError::BadLength(-2)))
        ));
    }
}

#[test]
fn peer_gone_after_messages_delivers_them_then_eof() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    drop(a);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert_eq!(b.recv::<u8>().unwrap(), 2);
    assert!(b.poll(None).unwrap(), "eof is ready");
    assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
    assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
}

#[test]
fn peer_gone_mid_frame_is_truncated_then_eof() {
    let (a, mut b) = blocking_pipe(true).unwrap();
    raw_write(&a, &[0, 0, 0, 10, 1, 2, 3]);
    drop(a);
    assert!(matches!(
        b.recv_bytes(),
        Err(Error::Frame(FrameError::Truncated {
            expected: 10,
            got: 3
        }))
    ));
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn send_to_a_closed_peer_is_eof() {
    let (mut a, b) = blocking_pipe(true).unwrap();
    drop(b);
    assert!(matches!(a.send(&1u8), Err(Error::Eof)));
    assert!(matches!(a.send_bytes(&vec![0; 100_000]), Err(Error::Eof)));
}

#[tokio::test]
async fn async_send_to_a_closed_peer_is_eof() {
    let (mut a, b) = pipe(true).unwrap();
    drop(b);
    assert!(matches!(a.send(&1u8).await, Err(Error::Eof)));
}

#[test]
fn oversized_outgoing_message_writes_nothing() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    a.set_max_frame_len(10);
    assert_eq!(a.max_frame_len(), 10);
    let err = a.send_bytes(&[0; 11]).unwrap_err();
    assert!(matches!(
        err,
        Error::Frame(FrameError::TooLarge { len: 11, max: 10 })
    ));
    let err = a.send(&"a string longer than ten bytes").unwrap_err();
    assert!(matches!(
        err,
        Error::Frame(FrameError::TooLarge { max: 10, .. })
    ));
    let err = a.send_bytes(&vec![0; 1 << 20]).unwrap_err();
    assert!(matches!(
        err,
        Error::Frame(FrameError::TooLarge { max: 10, .. })
    ));
    assert!(
        !b.poll(Some(Duration::ZERO)).unwrap(),
        "nothing was written"
    );
    a.send(&"fits").unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "fits");
}

#[test]
fn unencodable_value_writes_nothing() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    assert!(matches!(a.send(&Fails), Err(Error::Encode(_))));
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn operations_after_close_are_closed_errors() {
    let (mut a, _b) = blocking_pipe(true).unwrap();
    assert!(!a.is_closed());
    a.close();
    a.close();
    assert!(a.is_closed());
    assert!(
        a.is_readable() && a.is_writable(),
        "direction is kept, as in Python"
    );
    assert!(matches!(a.send(&1u8), Err(Error::Closed)));
    assert!(matches!(a.recv::<u8>(), Err(Error::Closed)));
    assert!(matches!(a.poll(None), Err(Error::Closed)));
    assert!(matches!(a.as_fd(), Err(Error::Closed)));
    assert!(matches!(a.into_owned_fd(), Err(Error::Closed)));
}

#[tokio::test]
async fn async_operations_after_close_are_closed_errors() {
    let (mut a, _b) = pipe(true).unwrap();
    a.close();
    assert!(a.is_closed());
    assert!(matches!(a.send(&1u8).await, Err(Error::Closed)));
    assert!(matches!(a.recv_bytes().await, Err(Error::Closed)));
    assert!(matches!(
        a.poll(Some(Duration::ZERO)).await,
        Err(Error::Closed)
    ));
}

#[test]
fn poll_reports_readiness_and_times_out() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    let start = std::time::Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(10))).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(10));
    a.send(&()).unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(None).unwrap(), "still ready: poll does not consume");
    b.recv::<()>().unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn poll_wakes_for_a_message_sent_by_another_thread() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    let (mut go_tx, mut go_rx) = blocking_pipe(true).unwrap();
    let t = std::thread::spawn(move || {
        go_rx.recv::<()>().unwrap();
        a.send(&9u8).unwrap();
        a
    });
    go_tx.send(&()).unwrap();
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 9);
    drop(t.join().unwrap());
}

#[tokio::test(start_paused = true)]
async fn async_poll_times_out_and_wakes() {
    let (mut a, mut b) = pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).await.unwrap());
    assert!(!b.poll(Some(Duration::from_secs(60))).await.unwrap());
    a.send(&1u8).await.unwrap();
    assert!(b.poll(Some(Duration::from_secs(60))).await.unwrap());
    assert!(b.poll(None).await.unwrap());
    assert_eq!(b.recv::<u8>().await.unwrap(), 1);
}

#[test]
fn recv_bytes_into_reuses_the_buffer() {
    let (mut a, mut b) = blocking_pipe(true).unwrap();
    let mut buf = Vec::with_capacity(1024);
    let ptr = buf.as_ptr();
    for msg in [&b"first"[..], b"second, longer", b""] {
        a.send_bytes(msg).unwrap();
        b.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(buf, msg);
        assert_eq!(buf.as_ptr(), ptr, "no reallocation");
    }
}

#[tokio::test]
async fn views_convert_without_losing_buffered_messages() {
    let (a, b) = blocking_pipe(true).unwrap();
    let (mut a, mut b) = (a, Connection::from(b));
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    assert_eq!(b.recv::<u8>().await.unwrap(), 1);
    let mut b = BlockingConnection::from(b);
    assert_eq!(
        b.recv::<u8>().unwrap(),
        2,
        "read ahead while async, received blocking"
    );
    let mut b = Connection::from(b);
    a.send(&3u8).unwrap();
    assert_eq!(b.recv::<u8>().await.unwrap(), 3);
}

#[test]
fn an_async_connection_moves_between_runtimes() {
    let (mut a, mut b) = pipe(true).unwrap();
    for round in 0..3u8 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let echo = async {
                let n: u8 = b.recv().await.unwrap();
                b.send(&(n + 1)).await.unwrap();
            };
            let ask = async {
                a.send(&round).await.unwrap();
                a.recv::<u8>().await.unwrap()
            };
            let ((), got) = tokio::join!(echo, ask);
            assert_eq!(got, round + 1);
        });
    }
}

#[test]
fn async_recv_outside_a_runtime_is_an_error_not_a_panic() {
    let (mut a, mut b) = pipe(true).unwrap();
    // Sending succeeds without ever waiting, so it needs no runtime.
    assert!(matches!(poll_once(a.send(&1u8)), Poll::Ready(Ok(()))));
    assert!(matches!(poll_once(b.recv::<u8>()), Poll::Ready(Ok(1))));
    assert!(matches!(
        poll_once(b.recv::<u8>()),
        Poll::Ready(Err(Error::NoRuntime))
    ));
}

#[tokio::test]
async fn cancelled_sends_never_tear_frames() {
    let (mut a, b) = pipe(true).unwrap();
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    // Nobody reads yet: the big send fills the socket buffer and is dropped half-way.
    assert!(poll_once(a.send_bytes(&big)).is_pending());
    // This one cannot write any of its bytes, so dropping it unsends it.
    assert!(poll_once(a.send(&"dropped")).is_pending());
    let expected = big.clone();
    let reader = std::thread::spawn(move || {
        let mut b = BlockingConnection::from(b);
        assert_eq!(b.recv_bytes().unwrap(), expected);
        assert_eq!(b.recv::<String>().unwrap(), "kept");
    });
    a.send(&"kept").await.unwrap();
    tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn fds_round_trip_through_the_accessors() {
    let (a, b) = blocking_pipe(true).unwrap();
    let fd = a.into_owned_fd().unwrap();
    let mut a = Connection::from_owned_fd(fd, true, true)
        .map(BlockingConnection::from)
        .unwrap();
    let mut b = b;
    a.send(&"still works").unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "still works");
}

#[test]
fn from_owned_fd_checks_its_arguments() {
    let (a, _b) = blocking_pipe(true).unwrap();
    let fd = a.into_owned_fd().unwrap();
    assert!(matches!(
        BlockingConnection::from_owned_fd(fd, false, false),
        Err(Error::NoDirection)
    ));
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    assert!(matches!(
        BlockingConnection::from_owned_fd(null, true, true),
        Err(Error::NotSocketOrPipe)
    ));
    let (r, _w) = std::io::pipe().unwrap();
    let r = BlockingConnection::from_owned_fd(r.into(), true, false).unwrap();
    assert!(r.is_readable() && !r.is_writable());
}

#[test]
fn debug_shows_state_but_not_payload() {
    let (mut a, b) = blocking_pipe(true).unwrap();
    a.send_bytes(&[0xAB; 3]).unwrap();
    let mut b = Connection::from(b);
    b.set_max_frame_len(1000);
    let s = format!("{b:?}");
    assert!(s.starts_with("Connection {"), "{s}");
    assert!(s.contains("max_frame_len: 1000"), "{s}");
    assert!(!s.contains("171"), "{s}");
    a.close();
    assert!(format!("{a:?}").contains("fd: \"closed\""));
}
