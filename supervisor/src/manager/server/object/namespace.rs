//! The built-in `namespace`: encoded attributes by name.

use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::{Caller, Object, args, lock, ret, unknown};
use crate::manager::error::ManagerError;

/// Attributes by name.
#[derive(Default)]
pub(crate) struct Namespace {
    attrs: Mutex<Vec<(String, ByteBuf)>>,
}

impl Object for Namespace {
    fn typeid(&self) -> &str {
        "namespace"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut attrs = lock(&self.attrs);
        match method {
            "set" => {
                let (name, v): (String, ByteBuf) = args(method, a)?;
                match attrs.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = v,
                    None => attrs.push((name, v)),
                }
                ret(&())
            }
            "get" => {
                let (name,): (String,) = args(method, a)?;
                ret(&attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v))
            }
            "del" => {
                let (name,): (String,) = args(method, a)?;
                let before = attrs.len();
                attrs.retain(|(n, _)| *n != name);
                ret(&(attrs.len() != before))
            }
            "items" => ret(&*attrs),
            _ => Err(unknown("namespace", method)),
        }
    }
}
