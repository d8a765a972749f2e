//! The authkey handshake of CPython's `multiprocessing.connection`, byte for byte.
//!
//! Each side proves it knows the key without sending it: one sends `#CHALLENGE#`
//! and random bytes, the other answers with an HMAC of them, and the first says
//! `#WELCOME#` or `#FAILURE#`. Then the roles swap. A listener challenges first, a
//! client answers first.
//!
//! The challenge is `{sha256}` and 40 random bytes, as CPython 3.12+ sends it; the
//! answer is `{sha256}` and the HMAC-SHA256 of the whole challenge, prefix included
//! (so an answer cannot downgrade the digest). CPython 3.11 and older send 20 bytes
//! and answer with a bare 16-byte HMAC-MD5; both are understood. Every handshake
//! message is at most 256 bytes; a longer one, or a length prefix that claims more,
//! ends the handshake with nothing allocated.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};

use crate::{BlockingConnection, Error};

/// What a challenge starts with.
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The answer to a right digest.
pub const WELCOME: &[u8] = b"#WELCOME#";
/// The answer to a wrong digest.
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge (CPython 3.12's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// A CPython 3.11 challenge: 20 random bytes, no digest prefix.
const MD5_ONLY_MESSAGE_LENGTH: usize = 20;
/// A CPython 3.11 answer: a bare HMAC-MD5.
const MD5_DIGEST_LEN: usize = 16;
/// The longest handshake message either side takes.
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;
/// How long a handshake may take in all, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Our challenge was answered with a wrong digest (CPython: "digest received was
    /// wrong"); the peer was told `#FAILURE#`.
    #[error("digest received was wrong")]
    DigestWrong,
    /// Our answer was refused (CPython: "digest sent was rejected").
    #[error("digest sent was rejected")]
    Rejected,
    /// The peer broke the protocol: no challenge where one was due, a challenge too
    /// short, a digest we do not know.
    #[error("authentication protocol error: {0}")]
    Protocol(String),
    /// The peer did not finish the handshake in time.
    #[error("the peer did not finish the authentication handshake within {0:?}")]
    Timeout(Duration),
}

/// The digests a challenge may name (CPython's `_ALLOWED_DIGESTS` that this
/// implementation computes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static [u8] {
        match self {
            Digest::Md5 => b"md5",
            Digest::Sha256 => b"sha256",
            Digest::Sha384 => b"sha384",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
        }
    }
}

/// CPython's `_get_digest_name_and_payload`: `None` for the legacy format (a bare
/// MD5), else the digest a `{name}` prefix names and what follows it.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8]), AuthError> {
    if message.len() == MD5_ONLY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LEN {
        return Ok((None, message));
    }
    let unsupported = || {
        AuthError::Protocol(
            "unsupported message length, missing digest prefix, or unsupported digest".into(),
        )
    };
    if message.first() != Some(&b'{') {
        return Err(unsupported());
    }
    // CPython looks for '}' within the longest allowed name.
    let curly = message
        .iter()
        .take(2 + b"sha3_384".len())
        .position(|&b| b == b'}')
        .filter(|&i| i > 0)
        .ok_or_else(unsupported)?;
    let digest = match &message[1..curly] {
        b"md5" => Digest::Md5,
        b"sha256" => Digest::Sha256,
        b"sha384" => Digest::Sha384,
        b"sha3_256" | b"sha3_384" => {
            return Err(AuthError::Protocol(
                "the peer asks for a SHA-3 digest, which this side does not compute".into(),
            ));
        }
        _ => return Err(unsupported()),
    };
    Ok((Some(digest), &message[curly + 1..]))
}

/// CPython's `_create_response`.
fn create_response(key: &[u8], message: &[u8]) -> Result<Vec<u8>, AuthError> {
    match digest_and_payload(message)?.0 {
        None => Ok(Digest::Md5.mac(key, message)),
        Some(d) => {
            let mut response = Vec::with_capacity(2 + d.name().len() + 48);
            response.push(b'{');
            response.extend_from_slice(d.name());
            response.push(b'}');
            response.extend_from_slice(&d.mac(key, message));
            Ok(response)
        }
    }
}

/// CPython's `_verify_challenge`, in constant time.
fn verify(key: &[u8], message: &[u8], response: &[u8]) -> Result<(), AuthError> {
    let (digest, mac) = digest_and_payload(response)?;
    let expected = digest.unwrap_or(Digest::Md5).mac(key, message);
    if expected.len() != mac.len() {
        return Err(AuthError::DigestWrong);
    }
    let diff = expected
        .iter()
        .zip(mac)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(AuthError::DigestWrong)
    }
}

/// Receives one handshake message before `deadline`.
fn recv(
    conn: &mut BlockingConnection,
    deadline: Instant,
    limit: Duration,
) -> Result<Vec<u8>, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if !conn.poll(Some(left))? {
        return Err(Error::Auth(AuthError::Timeout(limit)));
    }
    conn.recv_bytes()
}

/// Runs `f` with the connection's frame limit at [`MAX_HANDSHAKE_MESSAGE`].
fn small_frames<R>(
    conn: &mut BlockingConnection,
    f: impl FnOnce(&mut BlockingConnection) -> Result<R, Error>,
) -> Result<R, Error> {
    let max = conn.max_frame_len();
    conn.set_max_frame_len(MAX_HANDSHAKE_MESSAGE);
    let out = f(conn);
    conn.set_max_frame_len(max);
    out
}

/// CPython's `deliver_challenge`: challenges the peer to prove it knows `key`.
///
/// # Errors
///
/// [`Error::Auth`] ([`AuthError::DigestWrong`] after telling the peer
/// `#FAILURE#`, [`AuthError::Timeout`], [`AuthError::Protocol`]), or the
/// connection's error (a frame over 256 bytes, the peer gone).
pub fn deliver_challenge(
    conn: &mut BlockingConnection,
    key: &[u8],
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    small_frames(conn, |conn| {
        let mut random = [0u8; MESSAGE_LENGTH];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        let mut message = b"{sha256}".to_vec();
        message.extend_from_slice(&random);
        let mut challenge = CHALLENGE.to_vec();
        challenge.extend_from_slice(&message);
        conn.send_bytes(&challenge)?;
        let response = recv(conn, deadline, timeout)?;
        match verify(key, &message, &response) {
            Ok(()) => conn.send_bytes(WELCOME),
            Err(e) => {
                let _ = conn.send_bytes(FAILURE);
                Err(Error::Auth(e))
            }
        }
    })
}

/// CPython's `answer_challenge`: proves to the peer that this side knows `key`.
///
/// # Errors
///
/// [`Error::Auth`] ([`AuthError::Rejected`], [`AuthError::Timeout`],
/// [`AuthError::Protocol`]), or the connection's error.
pub fn answer_challenge(
    conn: &mut BlockingConnection,
    key: &[u8],
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    small_frames(conn, |conn| {
        let message = recv(conn, deadline, timeout)?;
        let Some(message) = message.strip_prefix(CHALLENGE) else {
            return Err(Error::Auth(AuthError::Protocol(
                "expected a challenge".into(),
            )));
        };
        if message.len() < MD5_ONLY_MESSAGE_LENGTH {
            return Err(Error::Auth(AuthError::Protocol(format!(
                "challenge too short: {} bytes",
                message.len()
            ))));
        }
        let response = create_response(key, message).map_err(Error::Auth)?;
        conn.send_bytes(&response)?;
        if recv(conn, deadline, timeout)? == WELCOME {
            Ok(())
        } else {
            Err(Error::Auth(AuthError::Rejected))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modern_challenge_gets_a_prefixed_sha256_over_the_whole_message() {
        let message = b"{sha256}0123456789012345678901234567890123456789";
        let response = create_response(b"key", message).unwrap();
        assert!(response.starts_with(b"{sha256}"));
        assert_eq!(response.len(), 8 + 32);
        verify(b"key", message, &response).unwrap();
        assert_eq!(
            verify(b"other", message, &response),
            Err(AuthError::DigestWrong)
        );
    }

    #[test]
    fn a_legacy_challenge_gets_a_bare_md5() {
        let message = [7u8; 20];
        let response = create_response(b"key", &message).unwrap();
        assert_eq!(response.len(), 16);
        verify(b"key", &message, &response).unwrap();
    }

    #[test]
    fn a_legacy_answer_to_a_modern_challenge_is_checked_as_md5() {
        // What CPython 3.11 answers to a 3.12 challenge: MD5 over all of it.
        let message = b"{sha256}0123456789012345678901234567890123456789";
        let md5 = Digest::Md5.mac(b"key", message);
        verify(b"key", message, &md5).unwrap();
    }

    #[test]
    fn a_truncated_or_unknown_answer_is_refused() {
        let message = b"{sha256}0123456789012345678901234567890123456789";
        let mut response = create_response(b"key", message).unwrap();
        response.truncate(response.len() - 1);
        assert_eq!(
            verify(b"key", message, &response),
            Err(AuthError::DigestWrong)
        );
        assert!(matches!(
            verify(b"key", message, b"{whirlpool}abc"),
            Err(AuthError::Protocol(_))
        ));
        assert!(matches!(
            verify(b"key", message, b"no prefix at all, and not 16 bytes"),
            Err(AuthError::Protocol(_))
        ));
    }

    #[test]
    fn known_vectors_match_rfc_4231_and_2104() {
        // RFC 4231 test case 2 (HMAC-SHA256) and RFC 2104's MD5 example.
        let sha = Digest::Sha256.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sha.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let md5 = Digest::Md5.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            md5.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "750c783e6ab0b503eaa86e310a5db738"
        );
    }
}
