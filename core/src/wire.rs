//! What a control link's messages look like: a type byte, then a
//! [`Packet`](crate::Packet) in the codec, or an [`Envelope`] in a fixed little-endian
//! layout that routing reads in place, with no decoding and no allocation.
//!
//! An envelope message is laid out as
//!
//! ```text
//! 0      type (ENVELOPE)
//! 1      body kind (BodyKind)
//! 2      n = to's length, 3  m = from's length (levels of the tree, at most 255)
//! 4..12  corr (u64)
//! 12..   [span (u64), when the body kind has SPAN set] to (n × u32), from (m × u32),
//!        then the payload (for Fail: the codec's encoding of the RemoteError)
//! ```
//!
//! A call may carry its caller's span: a number the root gave the `tracing` span its
//! caller was in, which the callee's forwarded log records name (see the supervisor's
//! `runtime/logging`). Most calls carry none, and their envelope has no room for one.
//!
//! ```
//! use multiproc_core::wire::{BodyKind, EnvelopeRef, PathRef};
//! use multiproc_core::Hop;
//!
//! let env = EnvelopeRef {
//!     to: PathRef::Words(&[1, 2]),
//!     from: PathRef::Words(&[]),
//!     corr: 7,
//!     kind: BodyKind::Call,
//!     payload: b"hi",
//!     span: None,
//! };
//! let mut bytes = vec![0; env.encoded_len()];
//! env.write(&mut bytes);
//! let back = EnvelopeRef::parse(&bytes).unwrap();
//! assert_eq!((back.corr, back.kind, back.payload), (7, BodyKind::Call, &b"hi"[..]));
//! assert_eq!(back.next_hop(&[1]), Hop::Child(2));
//! ```

use crate::{Body, Envelope, Hop, Identity, RemoteError, codec};

/// The type of a message holding a [`Packet`](crate::Packet) in the codec.
pub const PACKET: u8 = 1;
/// The type of a message holding an envelope in the fixed layout.
pub const ENVELOPE: u8 = 2;
/// Set on the type of a message written on the socket without a marker in the ring
/// (only before the ring is in use: a child's refusal of its Hello).
pub const DIRECT: u8 = 0x80;

/// Bytes before an envelope's paths (and its span, if it carries one).
const FIXED: usize = 12;
/// Set on the body kind's byte when a span follows the correlation number.
const SPAN: u8 = 0x40;

/// What an envelope carries, as its byte in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BodyKind {
    /// [`Body::Call`].
    Call = 1,
    /// [`Body::Cast`].
    Cast = 2,
    /// [`Body::Reply`].
    Reply = 3,
    /// [`Body::Fail`].
    Fail = 4,
    /// [`Body::Service`].
    Service = 5,
}

impl BodyKind {
    fn from_byte(b: u8) -> Option<BodyKind> {
        Some(match b {
            1 => BodyKind::Call,
            2 => BodyKind::Cast,
            3 => BodyKind::Reply,
            4 => BodyKind::Fail,
            5 => BodyKind::Service,
            _ => return None,
        })
    }

    /// Whether the sender waits for an answer (a `Service` request does only with a
    /// correlation number other than 0).
    pub fn expects_answer(self, corr: u64) -> bool {
        match self {
            BodyKind::Call => true,
            BodyKind::Service => corr != 0,
            _ => false,
        }
    }
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its own lengths say.
    #[error("a message of {0} bytes is shorter than its header says")]
    Truncated(usize),
    /// A message type or body kind of no known value.
    #[error("unknown message type or body kind {0:#x}")]
    Unknown(u8),
    /// A `Fail` whose error does not decode.
    #[error("a failure that does not decode: {0}")]
    BadFail(String),
}

/// The numbers of an identity, as a slice or as little-endian bytes in a message.
#[derive(Debug, Clone, Copy)]
pub enum PathRef<'a> {
    /// From an [`Identity`] (or any slice).
    Words(&'a [u32]),
    /// From a message: `4 × len` bytes.
    Bytes(&'a [u8]),
}

impl<'a> PathRef<'a> {
    /// Its numbers' count.
    pub fn len(&self) -> usize {
        match self {
            PathRef::Words(w) => w.len(),
            PathRef::Bytes(b) => b.len() / 4,
        }
    }

    /// Whether it is the root's (empty) path.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th number.
    ///
    /// # Panics
    ///
    /// Past its end.
    pub fn get(&self, i: usize) -> u32 {
        match self {
            PathRef::Words(w) => w[i],
            PathRef::Bytes(b) => {
                u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            }
        }
    }

    /// Its numbers, outermost first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Whether it names the same process as `path`.
    pub fn is(&self, path: &[u32]) -> bool {
        self.len() == path.len() && self.iter().zip(path).all(|(a, &b)| a == b)
    }

    /// The identity it names.
    pub fn to_identity(&self) -> Identity {
        Identity::from_path(self.iter().collect())
    }
}

impl<'a> From<&'a Identity> for PathRef<'a> {
    fn from(id: &'a Identity) -> Self {
        PathRef::Words(id.path())
    }
}

/// Where a message for `to` goes next from the process at `me`: the one routing
/// decision, for identities and for paths read from messages alike.
pub fn next_hop(me: &[u32], to: PathRef<'_>) -> Hop {
    let under_me = to.len() >= me.len() && me.iter().enumerate().all(|(i, &n)| to.get(i) == n);
    if under_me && to.len() > me.len() {
        Hop::Child(to.get(me.len()))
    } else if under_me {
        Hop::Here
    } else if me.is_empty() {
        // The root is everyone's ancestor, so nothing can be above it.
        Hop::Nowhere
    } else {
        Hop::Parent
    }
}

/// An envelope whose parts are borrowed: from an [`Envelope`], from a caller's own
/// values, or from a message in a link's buffer.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeRef<'a> {
    /// The destination.
    pub to: PathRef<'a>,
    /// The sender, where answers go.
    pub from: PathRef<'a>,
    /// The correlation number.
    pub corr: u64,
    /// What the payload is.
    pub kind: BodyKind,
    /// The payload, still encoded.
    pub payload: &'a [u8],
    /// The caller's span, as the root numbers it, for a call made in one.
    pub span: Option<u64>,
}

impl<'a> EnvelopeRef<'a> {
    /// Bytes before the paths.
    fn fixed(&self) -> usize {
        FIXED + if self.span.is_some() { 8 } else { 0 }
    }

    /// The bytes of its message, the type byte included.
    pub fn encoded_len(&self) -> usize {
        self.fixed() + 4 * (self.to.len() + self.from.len()) + self.payload.len()
    }

    /// Writes its message into `out`, which is [`encoded_len`](Self::encoded_len)
    /// bytes long.
    ///
    /// # Panics
    ///
    /// When `out` has another length, or a path is over 255 levels deep.
    pub fn write(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.encoded_len(), "the message's length");
        let levels = |p: &PathRef<'_>| u8::try_from(p.len()).expect("a tree under 256 levels deep");
        out[0] = ENVELOPE;
        out[1] = self.kind as u8 | if self.span.is_some() { SPAN } else { 0 };
        out[2] = levels(&self.to);
        out[3] = levels(&self.from);
        out[4..FIXED].copy_from_slice(&self.corr.to_le_bytes());
        let mut at = FIXED;
        if let Some(span) = self.span {
            out[at..at + 8].copy_from_slice(&span.to_le_bytes());
            at += 8;
        }
        for n in self.to.iter().chain(self.from.iter()) {
            out[at..at + 4].copy_from_slice(&n.to_le_bytes());
            at += 4;
        }
        out[at..].copy_from_slice(self.payload);
    }

    /// Appends its message to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        self.write(&mut out[start..]);
    }

    /// Reads the envelope of a message (its type byte included, [`DIRECT`] or not).
    ///
    /// # Errors
    ///
    /// [`WireError`] when the bytes are not an envelope message.
    pub fn parse(bytes: &'a [u8]) -> Result<EnvelopeRef<'a>, WireError> {
        if bytes.len() < FIXED {
            return Err(WireError::Truncated(bytes.len()));
        }
        if bytes[0] & !DIRECT != ENVELOPE {
            return Err(WireError::Unknown(bytes[0]));
        }
        let kind = BodyKind::from_byte(bytes[1] & !SPAN).ok_or(WireError::Unknown(bytes[1]))?;
        let fixed = if bytes[1] & SPAN != 0 {
            FIXED + 8
        } else {
            FIXED
        };
        let (n, m) = (bytes[2] as usize, bytes[3] as usize);
        let paths = fixed + 4 * (n + m);
        if bytes.len() < paths {
            return Err(WireError::Truncated(bytes.len()));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Ok(EnvelopeRef {
            to: PathRef::Bytes(&bytes[fixed..fixed + 4 * n]),
            from: PathRef::Bytes(&bytes[fixed + 4 * n..paths]),
            corr: word(4),
            kind,
            payload: &bytes[paths..],
            span: (fixed > FIXED).then(|| word(FIXED)),
        })
    }

    /// Where it goes next from the process at `me`.
    pub fn next_hop(&self, me: &[u32]) -> Hop {
        next_hop(me, self.to)
    }

    /// It as an owned [`Envelope`] (allocates; for the paths that are not hot).
    ///
    /// # Errors
    ///
    /// [`WireError::BadFail`] when a `Fail`'s error does not decode.
    pub fn to_envelope(&self) -> Result<Envelope, WireError> {
        let bytes = self.payload.to_vec();
        let body = match self.kind {
            BodyKind::Call => Body::Call(bytes),
            BodyKind::Cast => Body::Cast(bytes),
            BodyKind::Reply => Body::Reply(bytes),
            BodyKind::Service => Body::Service(bytes),
            BodyKind::Fail => Body::Fail(
                codec::decode::<RemoteError>(self.payload)
                    .map_err(|e| WireError::BadFail(e.to_string()))?,
            ),
        };
        Ok(Envelope {
            to: self.to.to_identity(),
            from: self.from.to_identity(),
            corr: self.corr,
            body,
        })
    }
}

/// Writes an owned envelope's message onto the end of `out`.
///
/// # Errors
///
/// A `Fail` whose error does not encode (it always does).
pub fn write_envelope(env: &Envelope, out: &mut Vec<u8>) -> Result<(), crate::CodecError> {
    let encoded;
    let (kind, payload) = match &env.body {
        Body::Call(p) => (BodyKind::Call, p.as_slice()),
        Body::Cast(p) => (BodyKind::Cast, p.as_slice()),
        Body::Reply(p) => (BodyKind::Reply, p.as_slice()),
        Body::Service(p) => (BodyKind::Service, p.as_slice()),
        Body::Fail(e) => {
            encoded = codec::encode(e)?;
            (BodyKind::Fail, encoded.as_slice())
        }
    };
    EnvelopeRef {
        to: (&env.to).into(),
        from: (&env.from).into(),
        corr: env.corr,
        kind,
        payload,
        span: None,
    }
    .write_to(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hops() {
        let table: [(&[u32], &[u32], Hop); 7] = [
            (&[1], &[1], Hop::Here),
            (&[1], &[1, 3, 2], Hop::Child(3)),
            (&[1], &[2], Hop::Parent),
            (&[1, 2], &[1], Hop::Parent),
            (&[], &[2], Hop::Child(2)),
            (&[], &[], Hop::Here),
            (&[1], &[], Hop::Parent),
        ];
        for (me, to, want) in table {
            assert_eq!(next_hop(me, PathRef::Words(to)), want, "{me:?} -> {to:?}");
            let bytes: Vec<u8> = to.iter().flat_map(|n| n.to_le_bytes()).collect();
            assert_eq!(next_hop(me, PathRef::Bytes(&bytes)), want);
        }
    }

    #[test]
    fn bad_messages_are_named() {
        let env = EnvelopeRef {
            to: PathRef::Words(&[1]),
            from: PathRef::Words(&[]),
            corr: 1,
            kind: BodyKind::Reply,
            payload: b"x",
            span: None,
        };
        let mut bytes = Vec::new();
        env.write_to(&mut bytes);
        assert_eq!(
            EnvelopeRef::parse(&bytes[..10]).unwrap_err(),
            WireError::Truncated(10)
        );
        let mut wrong = bytes.clone();
        wrong[1] = 9;
        assert_eq!(
            EnvelopeRef::parse(&wrong).unwrap_err(),
            WireError::Unknown(9)
        );
        let mut deep = bytes.clone();
        deep[2] = 200;
        assert!(matches!(
            EnvelopeRef::parse(&deep),
            Err(WireError::Truncated(_))
        ));
        let mut fail = bytes;
        fail[1] = BodyKind::Fail as u8;
        assert!(matches!(
            EnvelopeRef::parse(&fail).unwrap().to_envelope(),
            Err(WireError::BadFail(_))
        ));
    }

    #[test]
    fn a_span_rides_with_its_call() {
        for span in [None, Some(0), Some(u64::MAX)] {
            let env = EnvelopeRef {
                to: PathRef::Words(&[1, 2]),
                from: PathRef::Words(&[3]),
                corr: 9,
                kind: BodyKind::Call,
                payload: b"msg",
                span,
            };
            let mut bytes = Vec::new();
            env.write_to(&mut bytes);
            let back = EnvelopeRef::parse(&bytes).unwrap();
            assert_eq!(
                (back.span, back.corr, back.kind, back.payload),
                (span, 9, BodyKind::Call, &b"msg"[..])
            );
            assert!(back.to.is(&[1, 2]) && back.from.is(&[3]));
            assert_eq!(back.encoded_len(), bytes.len());
        }
    }

    fn body() -> impl Strategy<Value = Body> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            bytes.clone().prop_map(Body::Call),
            bytes.clone().prop_map(Body::Cast),
            bytes.clone().prop_map(Body::Reply),
            bytes.prop_map(Body::Service),
            "[a-z]{0,10}".prop_map(|s| Body::Fail(RemoteError::Decode(s))),
        ]
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(
            to in proptest::collection::vec(any::<u32>(), 0..6),
            from in proptest::collection::vec(any::<u32>(), 0..6),
            corr in any::<u64>(),
            body in body(),
        ) {
            let env = Envelope { to: Identity::from_path(to), from: Identity::from_path(from), corr, body };
            let mut bytes = Vec::new();
            write_envelope(&env, &mut bytes).unwrap();
            prop_assert_eq!(EnvelopeRef::parse(&bytes).unwrap().to_envelope().unwrap(), env);
        }

        /// Any bytes parse to an envelope or to an error, never to a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(env) = EnvelopeRef::parse(&bytes) {
                let _ = env.to_envelope();
                let _ = env.next_hop(&[1, 2]);
            }
        }
    }
}
