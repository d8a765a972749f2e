//! The built-in `lock`: Python's `threading.Lock`, released when the connection
//! that holds it closes.

use std::sync::{Condvar, Mutex};

use super::{Caller, ConnId, Object, args, deadline, lock, ret, unknown, wait_until};
use crate::manager::ManagerError;

/// Python's `threading.Lock`, which a manager's `Lock()` is; released when the
/// connection that holds it closes.
#[derive(Default)]
pub(crate) struct Lock {
    state: Mutex<LockState>,
    free: Condvar,
}

#[derive(Default)]
struct LockState {
    holder: Option<ConnId>,
    /// The last holder's connection closed while it held the lock.
    died: bool,
}

impl Object for Lock {
    fn typeid(&self) -> &str {
        "lock"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let state = lock(&self.state);
        match method {
            "acquire" => {
                let (block, timeout_ms): (bool, Option<u64>) = args(method, a)?;
                let (mut state, got) = wait_until(
                    caller,
                    state,
                    &self.free,
                    deadline(block, timeout_ms),
                    |s| s.holder.is_none().then_some(()),
                )?;
                if got.is_none() {
                    return ret(&(false, false));
                }
                state.holder = Some(caller.conn);
                let died = std::mem::take(&mut state.died);
                ret(&(true, died))
            }
            "release" => {
                let mut state = state;
                if state.holder.take().is_none() {
                    return Err(ManagerError::Misuse("release unlocked lock".into()));
                }
                self.free.notify_one();
                ret(&())
            }
            "locked" => ret(&state.holder.is_some()),
            _ => Err(unknown("lock", method)),
        }
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = lock(&self.state);
        if state.holder == Some(conn) {
            state.holder = None;
            state.died = true;
            self.free.notify_one();
        }
    }
}
