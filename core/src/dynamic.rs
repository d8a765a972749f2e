//! A value of any of Python's plain types, for containers that mix them (a
//! manager's dict with `0.25`, `1` and `"2"` as keys) and for printing them as
//! Python does.
//!
//! ```
//! use multiproc_core::Dynamic;
//!
//! let d = Dynamic::Dict(vec![
//!     (Dynamic::from(0.25), Dynamic::None),
//!     (Dynamic::from(1), Dynamic::from("1")),
//!     (Dynamic::from("2"), Dynamic::from(2)),
//! ]);
//! assert_eq!(d.to_string(), "{0.25: None, 1: '1', '2': 2}");
//! ```

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `None`, a bool, an int, a float, a str, bytes, a list or a dict.
///
/// It encodes as the plain value (an int as an int, `None` as nil), so a
/// `Dynamic` and a typed value with the same contents are the same bytes on the
/// wire: a manager's dict keyed by `Dynamic` finds `1` whether it was put as an
/// `i64` or as `Dynamic::Int(1)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Dynamic {
    /// Python's `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(String),
    /// bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Dynamic>),
    /// A dict, in insertion order.
    Dict(Vec<(Dynamic, Dynamic)>),
}

impl Serialize for Dynamic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dynamic::None => s.serialize_none(),
            Dynamic::Bool(v) => s.serialize_bool(*v),
            Dynamic::Int(v) => s.serialize_i64(*v),
            Dynamic::Float(v) => s.serialize_f64(*v),
            Dynamic::Str(v) => s.serialize_str(v),
            Dynamic::Bytes(v) => s.serialize_bytes(v),
            Dynamic::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Dynamic::Dict(items) => {
                let mut map = s.serialize_map(Some(items.len()))?;
                for (k, v) in items {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Dynamic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dynamic, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dynamic;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("None, a bool, a number, a string, bytes, a list or a map")
            }
            fn visit_unit<E>(self) -> Result<Dynamic, E> {
                Ok(Dynamic::None)
            }
            fn visit_none<E>(self) -> Result<Dynamic, E> {
                Ok(Dynamic::None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Dynamic, D::Error> {
                Dynamic::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Dynamic, E> {
                Ok(Dynamic::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Dynamic, E> {
                Ok(Dynamic::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dynamic, E> {
                i64::try_from(v)
                    .map(Dynamic::Int)
                    .map_err(|_| E::custom("an int past i64"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Dynamic, E> {
                Ok(Dynamic::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Dynamic, E> {
                Ok(Dynamic::Str(v.to_string()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Dynamic, E> {
                Ok(Dynamic::Bytes(v.to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dynamic, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Dynamic::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dynamic, A::Error> {
                let mut items = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    items.push(entry);
                }
                Ok(Dynamic::Dict(items))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<i64> for Dynamic {
    fn from(v: i64) -> Dynamic {
        Dynamic::Int(v)
    }
}

impl From<i32> for Dynamic {
    fn from(v: i32) -> Dynamic {
        Dynamic::Int(i64::from(v))
    }
}

impl From<f64> for Dynamic {
    fn from(v: f64) -> Dynamic {
        Dynamic::Float(v)
    }
}

impl From<bool> for Dynamic {
    fn from(v: bool) -> Dynamic {
        Dynamic::Bool(v)
    }
}

impl From<&str> for Dynamic {
    fn from(v: &str) -> Dynamic {
        Dynamic::Str(v.to_string())
    }
}

impl From<String> for Dynamic {
    fn from(v: String) -> Dynamic {
        Dynamic::Str(v)
    }
}

impl<T: Into<Dynamic>> From<Option<T>> for Dynamic {
    fn from(v: Option<T>) -> Dynamic {
        v.map_or(Dynamic::None, Into::into)
    }
}

/// Python's `repr` of a str: single quotes unless the text has one and no double.
fn repr_str(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    write!(f, "{quote}")?;
    for c in s.chars() {
        match c {
            '\\' => write!(f, "\\\\")?,
            '\n' => write!(f, "\\n")?,
            '\r' => write!(f, "\\r")?,
            '\t' => write!(f, "\\t")?,
            c if c == quote => write!(f, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    write!(f, "{quote}")
}

/// Python's `repr` of a float: the shortest text that reads back, with `.0` for
/// whole numbers.
fn repr_float(v: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if v.is_nan() {
        write!(f, "nan")
    } else if v.is_infinite() {
        write!(f, "{}", if v > 0.0 { "inf" } else { "-inf" })
    } else if v == v.trunc() && v.abs() < 1e16 {
        write!(f, "{v:.1}")
    } else {
        write!(f, "{v}")
    }
}

impl fmt::Display for Dynamic {
    /// Python's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dynamic::None => write!(f, "None"),
            Dynamic::Bool(true) => write!(f, "True"),
            Dynamic::Bool(false) => write!(f, "False"),
            Dynamic::Int(v) => write!(f, "{v}"),
            Dynamic::Float(v) => repr_float(*v, f),
            Dynamic::Str(s) => repr_str(s, f),
            Dynamic::Bytes(b) => {
                write!(f, "b'")?;
                for &c in b {
                    match c {
                        b'\\' => write!(f, "\\\\")?,
                        b'\'' => write!(f, "\\'")?,
                        b'\n' => write!(f, "\\n")?,
                        0x20..=0x7e => write!(f, "{}", c as char)?,
                        _ => write!(f, "\\x{c:02x}")?,
                    }
                }
                write!(f, "'")
            }
            Dynamic::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Dynamic::Dict(items) => {
                write!(f, "{{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn encodes_as_the_plain_value() {
        assert_eq!(
            codec::encode(&Dynamic::Int(1)).unwrap(),
            codec::encode(&1u8).unwrap()
        );
        assert_eq!(
            codec::encode(&Dynamic::Str("a".into())).unwrap(),
            codec::encode("a").unwrap()
        );
        assert_eq!(
            codec::encode(&Dynamic::None).unwrap(),
            codec::encode(&Option::<i32>::None).unwrap()
        );
    }

    #[test]
    fn decodes_what_typed_values_encode() {
        let back: Dynamic = codec::decode(&codec::encode(&0.25f64).unwrap()).unwrap();
        assert_eq!(back, Dynamic::Float(0.25));
        let back: Dynamic = codec::decode(&codec::encode(&vec![1, 2]).unwrap()).unwrap();
        assert_eq!(back, Dynamic::List(vec![1.into(), 2.into()]));
        let back: Dynamic = codec::decode(&codec::encode(&"x").unwrap()).unwrap();
        assert_eq!(back, Dynamic::Str("x".into()));
    }

    #[test]
    fn prints_as_python_repr() {
        assert_eq!(Dynamic::Float(1.0).to_string(), "1.0");
        assert_eq!(Dynamic::Float(3.5).to_string(), "3.5");
        assert_eq!(Dynamic::Str("it's".into()).to_string(), "\"it's\"");
        assert_eq!(Dynamic::Bytes(b"a\x00".to_vec()).to_string(), "b'a\\x00'");
        assert_eq!(
            Dynamic::List(vec![Dynamic::Bool(true), Dynamic::None]).to_string(),
            "[True, None]"
        );
    }
}
