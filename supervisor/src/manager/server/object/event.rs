//! The built-in `event`: Python's `threading.Event`.

use std::sync::{Condvar, Mutex};

use super::{Caller, Object, args, deadline, lock, ret, unknown, wait_until};
use crate::manager::error::ManagerError;

/// Python's `threading.Event`.
#[derive(Default)]
pub(crate) struct Event {
    flag: Mutex<bool>,
    set: Condvar,
}

impl Object for Event {
    fn typeid(&self) -> &str {
        "event"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut flag = lock(&self.flag);
        match method {
            "set" => {
                *flag = true;
                self.set.notify_all();
                ret(&())
            }
            "clear" => {
                *flag = false;
                ret(&())
            }
            "is_set" => ret(&*flag),
            "wait" => {
                let (timeout_ms,): (Option<u64>,) = args(method, a)?;
                let (_flag, set) =
                    wait_until(caller, flag, &self.set, deadline(true, timeout_ms), |f| {
                        f.then_some(())
                    })?;
                ret(&set.is_some())
            }
            _ => Err(unknown("event", method)),
        }
    }
}
