//! The built-in `dict`: insertion-ordered, keyed by encoded keys.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_bytes::ByteBuf;

use super::{Caller, Object, args, lock, ret, unknown};
use crate::manager::error::ManagerError;

/// A dict that keeps insertion order, keyed by encoded keys.
#[derive(Default)]
pub(crate) struct Dict {
    map: Mutex<OrderedMap>,
}

#[derive(Default)]
struct OrderedMap {
    index: HashMap<ByteBuf, usize>,
    entries: Vec<Option<(ByteBuf, ByteBuf)>>,
}

impl OrderedMap {
    fn set(&mut self, k: ByteBuf, v: ByteBuf) {
        match self.index.get(&k) {
            Some(&i) => self.entries[i] = Some((k, v)),
            None => {
                self.index.insert(k.clone(), self.entries.len());
                self.entries.push(Some((k, v)));
            }
        }
    }

    fn get(&self, k: &ByteBuf) -> Option<&ByteBuf> {
        let i = *self.index.get(k)?;
        self.entries[i].as_ref().map(|(_, v)| v)
    }

    fn remove(&mut self, k: &ByteBuf) -> Option<ByteBuf> {
        let i = self.index.remove(k)?;
        let out = self.entries[i].take().map(|(_, v)| v);
        // Compact when most slots are holes.
        if self.entries.len() > 32 && self.index.len() * 2 < self.entries.len() {
            let live: Vec<(ByteBuf, ByteBuf)> = self.entries.drain(..).flatten().collect();
            self.index.clear();
            for (k, v) in live {
                self.set(k, v);
            }
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = &(ByteBuf, ByteBuf)> {
        self.entries.iter().flatten()
    }
}

impl Object for Dict {
    fn typeid(&self) -> &str {
        "dict"
    }

    fn call(&self, _: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut m = lock(&self.map);
        match method {
            "set" => {
                let (k, v): (ByteBuf, ByteBuf) = args(method, a)?;
                m.set(k, v);
                ret(&())
            }
            "get" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.get(&k))
            }
            "remove" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.remove(&k))
            }
            "contains" => {
                let (k,): (ByteBuf,) = args(method, a)?;
                ret(&m.index.contains_key(&k))
            }
            "len" => ret(&(m.index.len() as u64)),
            "keys" => ret(&m.iter().map(|(k, _)| k).collect::<Vec<_>>()),
            "values" => ret(&m.iter().map(|(_, v)| v).collect::<Vec<_>>()),
            "items" => ret(&m.iter().collect::<Vec<_>>()),
            "clear" => {
                *m = OrderedMap::default();
                ret(&())
            }
            "update" => {
                let (items,): (Vec<(ByteBuf, ByteBuf)>,) = args(method, a)?;
                for (k, v) in items {
                    m.set(k, v);
                }
                ret(&())
            }
            _ => Err(unknown("dict", method)),
        }
    }
}

impl Dict {
    /// A dict holding `items`, in order.
    pub(crate) fn new(items: Vec<(ByteBuf, ByteBuf)>) -> Dict {
        let d = Dict::default();
        {
            let mut m = lock(&d.map);
            for (k, v) in items {
                m.set(k, v);
            }
        }
        d
    }
}
