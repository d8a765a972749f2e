//! Errors of the codec.

/// Encoding or decoding a value with rmp-serde failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("cannot encode a value of type `{type_name}`: {message}")]
    Encode {
        /// The Rust type that was being encoded.
        type_name: &'static str,
        /// What rmp-serde reported.
        message: String,
    },
    /// The bytes did not decode as the expected type.
    #[error("cannot decode a value of type `{type_name}`: {message}")]
    Decode {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What rmp-serde reported.
        message: String,
    },
}
