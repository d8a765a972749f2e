//! Fuzz entry points of the core, shared by the cargo-fuzz targets and the property tests.
//!
//! A panic here is a bug for the fuzzer to report: decoding arbitrary bytes must give a
//! value or a [`CodecError`], and a value must survive a round trip unchanged.

use crate::{CodecError, Envelope, Hello, Packet, codec};

/// What [`packet`] made of its bytes.
#[derive(Debug)]
pub enum Decoded {
    /// A packet; for a [`Packet::Hello`], also what its body decoded to, as a child
    /// decodes it after checking the version and build id.
    Packet(Packet, Option<Result<Hello, CodecError>>),
    /// Not a packet; what the bytes decoded to as a bare [`Envelope`], the packet's
    /// most common payload.
    NotPacket(CodecError, Result<Envelope, CodecError>),
}

/// Decodes `data` as a control-link [`Packet`] (and a Hello's body, or else as an
/// [`Envelope`]).
///
/// # Panics
///
/// If something decodes but does not re-encode to a value equal to it.
pub fn packet(data: &[u8]) -> Decoded {
    match codec::decode::<Packet>(data) {
        Ok(p) => {
            round_trips(&p);
            let hello = match &p {
                Packet::Hello { body, .. } => Some(codec::decode::<Hello>(body)),
                _ => None,
            };
            if let Some(Ok(h)) = &hello {
                round_trips(h);
            }
            Decoded::Packet(p, hello)
        }
        Err(e) => {
            let envelope = codec::decode::<Envelope>(data);
            if let Ok(env) = &envelope {
                round_trips(env);
            }
            Decoded::NotPacket(e, envelope)
        }
    }
}

fn round_trips<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode(value).expect("a decoded value encodes");
    let back: T = codec::decode(&bytes).expect("an encoded value decodes");
    assert_eq!(&back, value, "a decoded value changed in a round trip");
}
