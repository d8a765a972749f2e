//! The object table: each object's references, written down by holder (each
//! process's reference link), lent credits and names, and what a link's changes
//! and its close do to them.

use std::collections::HashMap;
use std::sync::Arc;

use super::object::{ConnId, Object, lock};
use super::{RefOp, Server};
use crate::manager::error::ManagerError;

/// One served object and who keeps it.
pub(super) struct Slot {
    pub(super) object: Arc<dyn Object>,
    /// References held by live connections (the sum of their counts in `held`).
    pub(super) held: u64,
    /// Credits of encoded proxies not decoded yet.
    pub(super) lent: u64,
    /// Published under a name: kept until the server stops.
    pub(super) pinned: bool,
}

impl Slot {
    fn is_free(&self) -> bool {
        self.held == 0 && self.lent == 0 && !self.pinned
    }
}

/// The objects, and each reference link's references (Python's `id_to_obj` and
/// `id_to_refcount`, with the holders written down so that a dead process's
/// references go with it).
#[derive(Default)]
pub(super) struct Table {
    pub(super) slots: HashMap<u64, Slot>,
    /// Reference links (by connection) and how many references each holds, by object.
    pub(super) held: HashMap<ConnId, HashMap<u64, u64>>,
}

impl Table {
    /// Takes one of `conn`'s references to `id`; the object when it was the last.
    fn release(&mut self, conn: ConnId, id: u64) -> Option<Arc<dyn Object>> {
        let mine = self.held.get_mut(&conn)?;
        let n = mine.get_mut(&id)?;
        *n -= 1;
        if *n == 0 {
            mine.remove(&id);
        }
        let slot = self.slots.get_mut(&id)?;
        slot.held -= 1;
        if slot.is_free() {
            return self.slots.remove(&id).map(|s| s.object);
        }
        None
    }

    /// Gives `conn` a reference to `id`, paid with a lent credit if `credit` and
    /// there is one. An object already freed is not brought back.
    fn take(&mut self, conn: ConnId, id: u64, credit: bool) {
        let Some(mine) = self.held.get_mut(&conn) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        // More decodes than encodes (bytes decoded twice) find no credit: the extra
        // copies hold references of their own, as Python's unpickling increfs.
        if credit && slot.lent > 0 {
            slot.lent -= 1;
        }
        slot.held += 1;
        *mine.entry(id).or_insert(0) += 1;
    }
}

impl Server {
    /// Applies a reference link's changes, in order.
    pub(super) fn refs(&self, conn: ConnId, ops: &[RefOp]) -> Result<(), ManagerError> {
        let mut freed = Vec::new();
        {
            let mut table = lock(&self.table);
            if !table.held.contains_key(&conn) {
                return Err(ManagerError::Misuse(
                    "reference changes on a connection that is not a reference link".into(),
                ));
            }
            for op in ops {
                match *op {
                    RefOp::Accept(id) => table.take(conn, id, true),
                    RefOp::Share(id) => table.take(conn, id, false),
                    RefOp::Release(id) => freed.extend(table.release(conn, id)),
                }
            }
        }
        // Dropped outside the table's lock: a user type's drop may take long, or
        // drop proxies of its own.
        drop(freed);
        Ok(())
    }

    /// `conn` closed: the references it held go, as its process dropping them.
    pub(super) fn forget(&self, conn: ConnId) {
        let mut freed = Vec::new();
        {
            let mut table = lock(&self.table);
            let Some(mine) = table.held.remove(&conn) else {
                return;
            };
            for (id, n) in mine {
                if let Some(slot) = table.slots.get_mut(&id) {
                    slot.held -= n;
                    if slot.is_free() {
                        freed.extend(table.slots.remove(&id).map(|s| s.object));
                    }
                }
            }
        }
        drop(freed);
    }
}
