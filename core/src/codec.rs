//! The one encoding of multiproc: rmp-serde with named struct fields.
//!
//! Structs are encoded as maps (`to_vec_named`), not arrays: array encoding breaks on
//! `#[serde(skip_serializing_if)]` and on adding a field, and costs little less.
//!
//! ```
//! use multiproc_core::codec;
//! let bytes = codec::encode(&(42, None::<u8>, "hello")).unwrap();
//! let back: (i32, Option<u8>, String) = codec::decode(&bytes).unwrap();
//! assert_eq!(back, (42, None, "hello".to_string()));
//! assert!(codec::decode::<Vec<String>>(&bytes).is_err());
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CodecError;

/// Encodes `value` into a new buffer.
///
/// # Errors
///
/// [`CodecError::Encode`] when the value's `Serialize` implementation fails.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Appends the encoding of `value` to `buf`, so hot paths can reuse one buffer.
///
/// On error `buf` is truncated back to its length on entry.
///
/// # Errors
///
/// [`CodecError::Encode`] when the value's `Serialize` implementation fails.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = buf.len();
    let mut ser = rmp_serde::Serializer::new(&mut *buf).with_struct_map();
    value.serialize(&mut ser).map_err(|e| {
        buf.truncate(start);
        CodecError::Encode {
            type_name: std::any::type_name::<T>(),
            message: e.to_string(),
        }
    })
}

/// Decodes a `T` from `bytes`.
///
/// # Errors
///
/// [`CodecError::Decode`] when the bytes are not a valid encoding of a `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::Decode {
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: i32,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        label: Option<String>,
    }

    #[test]
    fn skip_serializing_if_round_trips_because_structs_are_maps() {
        let p = Point { x: 3, label: None };
        assert_eq!(decode::<Point>(&encode(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn decode_error_names_the_expected_type() {
        let err = decode::<Point>(&encode(&"text").unwrap()).unwrap_err();
        assert!(err.to_string().contains("Point"), "{err}");
    }

    #[test]
    fn encode_into_appends_and_keeps_prefix() {
        let mut buf = vec![0xAA];
        encode_into(&7u8, &mut buf).unwrap();
        assert_eq!(buf, vec![0xAA, 7]);
    }
}
