//! The built-in `value`: one encoded value.

use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::{Caller, Object, args, lock, ret, unknown};
use crate::manager::error::ManagerError;

/// One encoded value.
pub(crate) struct Value {
    pub(crate) value: Mutex<ByteBuf>,
}

impl Object for Value {
    fn typeid(&self) -> &str {
        "value"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut value = lock(&self.value);
        match method {
            "get" => ret(&*value),
            "set" => {
                let (v,): (ByteBuf,) = args(method, a)?;
                *value = v;
                ret(&())
            }
            _ => Err(unknown("value", method)),
        }
    }
}
