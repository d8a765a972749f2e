//! The built-in `list`, of encoded items, with Python's index rules.

use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::{Caller, Object, args, lock, ret, unknown};
use crate::manager::error::ManagerError;

/// A list of encoded items.
#[derive(Default)]
pub(crate) struct List {
    pub(crate) items: Mutex<Vec<ByteBuf>>,
}

/// Python's index rules: negative from the end; out of range is an error.
fn index(i: i64, len: usize) -> Result<usize, ManagerError> {
    let j = if i < 0 { i + len as i64 } else { i };
    if j < 0 || j as usize >= len {
        return Err(ManagerError::Index { index: i, len });
    }
    Ok(j as usize)
}

impl Object for List {
    fn typeid(&self) -> &str {
        "list"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut items = lock(&self.items);
        match method {
            "append" => {
                let (v,): (ByteBuf,) = args(method, a)?;
                items.push(v);
                ret(&())
            }
            "extend" => {
                let (vs,): (Vec<ByteBuf>,) = args(method, a)?;
                items.extend(vs);
                ret(&())
            }
            "get" => {
                let (i,): (i64,) = args(method, a)?;
                let j = index(i, items.len())?;
                ret(&items[j])
            }
            "set" => {
                let (i, v): (i64, ByteBuf) = args(method, a)?;
                let j = index(i, items.len())?;
                items[j] = v;
                ret(&())
            }
            "insert" => {
                let (i, v): (i64, ByteBuf) = args(method, a)?;
                let len = items.len() as i64;
                // Python clamps an insert position.
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                items.insert(j as usize, v);
                ret(&())
            }
            "pop" => {
                let (i,): (Option<i64>,) = args(method, a)?;
                let j = index(i.unwrap_or(-1), items.len())?;
                ret(&items.remove(j))
            }
            "len" => ret(&(items.len() as u64)),
            "items" => ret(&*items),
            "reverse" => {
                items.reverse();
                ret(&())
            }
            "clear" => {
                items.clear();
                ret(&())
            }
            _ => Err(unknown("list", method)),
        }
    }
}
