//! `multiproc::connection` against real CPython: every CPython version on the machine
//! connects to a multiproc `Listener` and listens for a multiproc `client`, with the
//! right authkey and with a wrong one; and raw peers that break the handshake.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::connection::{Address, AuthError, Error, Listener, client};

/// The peer script, shipped beside the example that uses it.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python_interop.py")
}

/// Every CPython 3 on the machine, once per version: `python3.X` on the `PATH`,
/// `python3`, and pyenv's versions. CPython 3.11 is on every machine; a machine
/// with none fails the test rather than skip it.
fn pythons() -> Vec<(String, PathBuf)> {
    let mut candidates: Vec<PathBuf> = (6..=14)
        .map(|minor| PathBuf::from(format!("python3.{minor}")))
        .collect();
    candidates.push(PathBuf::from("python3"));
    if let Some(home) = std::env::var_os("HOME") {
        let versions = Path::new(&home).join(".pyenv/versions");
        if let Ok(dir) = std::fs::read_dir(versions) {
            for entry in dir.flatten() {
                candidates.push(entry.path().join("bin/python3"));
            }
        }
    }
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for c in candidates {
        let Ok(out) = Command::new(&c)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .output()
        else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // multiprocessing.connection's context manager needs 3.3+; the handshake
        // under test is 3.x's.
        let recent = version
            .strip_prefix("3.")
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m >= 6);
        if out.status.success() && recent && !found.iter().any(|(v, _)| *v == version) {
            found.push((version, c));
        }
    }
    found.sort();
    eprintln!(
        "CPython versions under test: {:?}",
        found.iter().map(|(v, _)| v).collect::<Vec<_>>()
    );
    assert!(
        !found.is_empty(),
        "no CPython 3 found (python3 on the PATH, or pyenv's)"
    );
    found
}

/// A CPython peer, killed if the test fails before it ends.
struct Peer(Child);

impl Peer {
    fn start(python: &Path, args: &[&str]) -> Peer {
        Peer(
            Command::new(python)
                .arg(script())
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Runs `code` (a Python program) with `args` as its `sys.argv[1:]`.
    fn inline(python: &Path, code: &str, args: &[&str]) -> Peer {
        Peer(
            Command::new(python)
                .arg("-c")
                .arg(code)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Its first line of output.
    fn line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim_end().to_string()
    }

    /// Waits for it; its exit code and the rest of its output.
    fn finish(mut self) -> (i32, String) {
        let mut out = String::new();
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.0.wait().unwrap();
        (status.code().unwrap_or(-1), out + &err)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_listener(key: &[u8]) -> Listener {
    Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), Some(key)).unwrap()
}

#[test]
fn cpython_clients_talk_to_a_multiproc_listener() {
    for (version, python) in pythons() {
        let mut listener = tcp_listener(b"abracadabra");
        let peer = Peer::start(
            &python,
            &["client", &listener.address().to_string(), "abracadabra"],
        );
        let mut conn = listener.accept().unwrap();
        let got = conn.recv_bytes().unwrap();
        assert_eq!(got, format!("hello from CPython {version}").as_bytes());
        conn.send_bytes(b"hello from multiproc").unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"corpitlum morf olleh");
        let (code, out) = peer.finish();
        assert_eq!(code, 0, "CPython {version}: {out}");
        assert!(out.contains("received: hello from multiproc"), "{out}");
    }
}

#[test]
fn a_multiproc_client_talks_to_cpython_listeners() {
    for (version, python) in pythons() {
        let mut peer = Peer::start(&python, &["listener", "abracadabra"]);
        let port: u16 = peer.line().strip_prefix("port ").unwrap().parse().unwrap();
        let address = Address::tcp(("127.0.0.1", port)).unwrap();
        let mut conn = client(&address, Some(b"abracadabra")).unwrap();
        conn.send_bytes(b"hello from multiproc").unwrap();
        assert_eq!(
            conn.recv_bytes().unwrap(),
            format!("hello from CPython {version}").as_bytes()
        );
        let (code, out) = peer.finish();
        assert_eq!(code, 0, "CPython {version}: {out}");
        assert!(out.contains("received: hello from multiproc"), "{out}");
    }
}

#[test]
fn a_wrong_authkey_fails_on_both_sides_and_nothing_passes() {
    for (version, python) in pythons() {
        // A CPython client with the wrong key.
        let mut listener = tcp_listener(b"right key");
        let peer = Peer::start(
            &python,
            &["client", &listener.address().to_string(), "wrong key"],
        );
        let got = listener.accept();
        assert!(
            matches!(got, Err(Error::Auth(AuthError::DigestWrong))),
            "CPython {version}: {got:?}"
        );
        let (code, out) = peer.finish();
        assert_eq!(code, 3, "CPython {version}: {out}");
        assert!(out.contains("digest sent was rejected"), "{out}");

        // A multiproc client with the wrong key.
        let mut peer = Peer::start(&python, &["listener", "right key"]);
        let port: u16 = peer.line().strip_prefix("port ").unwrap().parse().unwrap();
        let got = client(
            &Address::tcp(("127.0.0.1", port)).unwrap(),
            Some(b"wrong key"),
        );
        assert!(
            matches!(got, Err(Error::Auth(AuthError::Rejected))),
            "CPython {version}: {got:?}"
        );
        let (code, out) = peer.finish();
        assert_eq!(code, 3, "CPython {version}: {out}");
        assert!(out.contains("digest received was wrong"), "{out}");
    }
}

#[test]
fn cpython_connects_to_an_abstract_unix_listener() {
    let (_, python) = pythons().remove(0);
    let address = Address::unique_abstract();
    let Address::Abstract(name) = &address else {
        unreachable!()
    };
    let mut listener = Listener::bind(&address, Some(b"k")).unwrap();
    let arg = format!("@{}", String::from_utf8_lossy(name));
    let peer = Peer::start(&python, &["client", &arg, "k"]);
    let mut conn = listener.accept().unwrap();
    assert!(
        conn.recv_bytes()
            .unwrap()
            .starts_with(b"hello from CPython")
    );
    conn.send_bytes(b"abc").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"cba");
    let (code, out) = peer.finish();
    assert_eq!(code, 0, "{out}");
}

/// Connects a raw TCP peer to `listener`, runs `peer` on it in a thread, and
/// returns what `accept` said.
fn accept_from(
    mut listener: Listener,
    peer: impl FnOnce(TcpStream) + Send + 'static,
) -> Result<(), Error> {
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let t = std::thread::spawn(move || peer(TcpStream::connect(addr).unwrap()));
    let got = listener.accept().map(|_| ());
    t.join().unwrap();
    got
}

/// Reads one frame of at most 256 bytes.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    buf
}

fn write_frame(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&(payload.len() as u32).to_be_bytes()).unwrap();
    s.write_all(payload).unwrap();
}

#[test]
fn a_length_prefix_of_2_gib_ends_the_handshake_with_nothing_allocated() {
    // 2 GiB takes CPython's large header: -1, then an 8-byte length; just under
    // it, the plain 4-byte one. Neither is read, let alone allocated.
    let large: Vec<u8> = (-1i32)
        .to_be_bytes()
        .into_iter()
        .chain((1u64 << 31).to_be_bytes())
        .collect();
    for header in [large, 0x7fff_ffffu32.to_be_bytes().to_vec()] {
        let listener = tcp_listener(b"k");
        let got = accept_from(listener, move |mut s| {
            let _challenge = read_frame(&mut s);
            s.write_all(&header).unwrap();
        });
        assert!(
            matches!(
                got,
                Err(Error::Frame(multiproc::FrameError::TooLarge { .. }))
            ),
            "{got:?}"
        );
    }
}

#[test]
fn a_wrong_or_truncated_hmac_is_refused() {
    for answer in [vec![0u8; 16], b"{sha256}short".to_vec(), Vec::new()] {
        let listener = tcp_listener(b"k");
        let sent = answer.clone();
        let got = accept_from(listener, move |mut s| {
            let _challenge = read_frame(&mut s);
            write_frame(&mut s, &sent);
            // The listener says #FAILURE# before it gives up, if it got that far.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        assert!(
            matches!(got, Err(Error::Auth(_))),
            "answer {answer:?}: {got:?}"
        );
    }
}

#[test]
fn a_peer_that_says_nothing_is_dropped_after_the_handshake_timeout() {
    let mut listener = tcp_listener(b"k");
    listener.set_handshake_timeout(Duration::from_millis(200));
    let t0 = Instant::now();
    let got = accept_from(listener, |s| {
        // Connected, silent, until the listener hangs up.
        let mut s = s;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    assert!(
        matches!(got, Err(Error::Auth(AuthError::Timeout(_)))),
        "{got:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn a_unix_path_listener_removes_its_file_when_closed() {
    let dir = std::env::temp_dir().join(format!("multiproc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("listener.sock");
    let address = Address::Unix(path.clone());
    let mut listener = Listener::bind(&address, Some(b"k")).unwrap();
    let peer = {
        let address = address.clone();
        std::thread::spawn(move || {
            let mut conn = client(&address, Some(b"k")).unwrap();
            conn.send_bytes(b"over a path").unwrap();
        })
    };
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"over a path");
    peer.join().unwrap();
    assert!(path.exists());
    drop(listener);
    assert!(!path.exists(), "the socket file is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 20 MiB: over the 16 MiB that used to be every connection's limit.
const BIG: usize = 20 << 20;

/// The bytes of a big test message: not all one value, so a misplaced chunk shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A CPython client that sends `BIG` bytes, expects them back reversed, and says so.
const SEND_BIG_AND_CHECK_ECHO: &str = r#"
import sys
from multiprocessing.connection import Client
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
big = (bytes(range(251)) * (size // 251 + 1))[:size]
with Client((host, port), authkey=b"big") as c:
    c.send_bytes(big)
    back = c.recv_bytes()
    print("echo", len(back), back == big[::-1])
"#;

#[test]
fn cpython_sends_and_receives_20_mib_through_a_multiproc_listener() {
    for (version, python) in pythons() {
        let mut listener = tcp_listener(b"big");
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        let peer = Peer::inline(
            &python,
            SEND_BIG_AND_CHECK_ECHO,
            &["127.0.0.1", &addr.port().to_string(), &BIG.to_string()],
        );
        let mut conn = listener.accept().unwrap();
        let mut got = conn.recv_bytes().unwrap();
        assert_eq!(got.len(), BIG, "CPython {version}");
        assert!(got == pattern(BIG), "CPython {version}: the bytes differ");
        got.reverse();
        conn.send_bytes(&got).unwrap();
        let (code, out) = peer.finish();
        assert_eq!(code, 0, "CPython {version}: {out}");
        assert!(out.contains(&format!("echo {BIG} True")), "{out}");
    }
}

/// A CPython client that sends an oversized message, then a small one, then waits for
/// the listener's word.
const SEND_OVERSIZED_THEN_SMALL: &str = r#"
import sys
from multiprocessing.connection import Client
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with Client((host, port), authkey=b"big") as c:
    c.send_bytes(b"x" * size)
    c.send_bytes(b"small")
    print("reply", c.recv_bytes().decode())
"#;

#[test]
fn a_listener_limit_refuses_an_oversized_cpython_message_and_keeps_the_next() {
    let (_, python) = pythons().remove(0);
    let mut listener = tcp_listener(b"big");
    listener.set_max_frame_len(1 << 20);
    assert_eq!(listener.max_frame_len(), 1 << 20);
    let Address::Tcp(addr) = listener.address().clone() else {
        unreachable!()
    };
    let over = (2 << 20).to_string();
    let peer = Peer::inline(
        &python,
        SEND_OVERSIZED_THEN_SMALL,
        &["127.0.0.1", &addr.port().to_string(), &over],
    );
    let mut conn = listener.accept().unwrap();
    assert_eq!(conn.max_frame_len(), 1 << 20);
    let got = conn.recv_bytes();
    assert!(
        matches!(
            got,
            Err(Error::Frame(multiproc::FrameError::TooLarge {
                len: 2097152,
                max: 1048576
            }))
        ),
        "{got:?}"
    );
    assert_eq!(conn.recv_bytes().unwrap(), b"small");
    // Sending is held to the same limit, with nothing written.
    let sent = conn.send_bytes(&vec![0u8; (1 << 20) + 1]);
    assert!(
        matches!(
            sent,
            Err(Error::Frame(multiproc::FrameError::TooLarge { .. }))
        ),
        "{sent:?}"
    );
    conn.send_bytes(b"refused one, kept the other").unwrap();
    let (code, out) = peer.finish();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reply refused one, kept the other"), "{out}");
}

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn an_absurd_length_prefix_costs_no_memory_with_or_without_a_limit() {
    // The largest 4-byte length, and -1 then 2^62 (4 EiB) in the long form.
    let long: Vec<u8> = (-1i32)
        .to_be_bytes()
        .into_iter()
        .chain((1u64 << 62).to_be_bytes())
        .collect();
    for (header, len) in [
        (0x7fff_ffffu32.to_be_bytes().to_vec(), 0x7fff_ffffu64),
        (long, 1 << 62),
    ] {
        let before = rss();
        // With a limit: refused as soon as the header is in.
        let mut listener = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), None).unwrap();
        listener.set_max_frame_len(1 << 20);
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        let mut raw = TcpStream::connect(addr).unwrap();
        let mut conn = listener.accept().unwrap();
        raw.write_all(&header).unwrap();
        let got = conn.recv_bytes();
        assert!(
            matches!(
                got,
                Err(Error::Frame(multiproc::FrameError::TooLarge { len: l, max: 1048576 })) if l == len
            ),
            "{got:?}"
        );

        // Without one (the default): the frame is waited for, with memory for the
        // bytes that came (1 MiB here), not for the length announced.
        let mut listener = Listener::bind(&Address::tcp("127.0.0.1:0").unwrap(), None).unwrap();
        assert_eq!(listener.max_frame_len(), multiproc::DEFAULT_MAX_FRAME_LEN);
        let Address::Tcp(addr) = listener.address().clone() else {
            unreachable!()
        };
        let mut raw = TcpStream::connect(addr).unwrap();
        let mut conn = listener.accept().unwrap();
        raw.write_all(&header).unwrap();
        raw.write_all(&vec![0u8; 1 << 20]).unwrap();
        drop(raw);
        let got = conn.recv_bytes();
        assert!(
            matches!(
                got,
                Err(Error::Frame(multiproc::FrameError::Truncated { expected, got: 1048576 })) if expected == len
            ),
            "{got:?}"
        );
        let grew = rss().saturating_sub(before);
        // Other tests run beside this one and move 20 MiB messages; a prefix taken on
        // trust would be 2 GiB or more.
        assert!(grew < 512 << 20, "RSS grew by {grew} bytes");
    }
}
