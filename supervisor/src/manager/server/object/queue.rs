//! The built-in `queue`: Python's `queue.Queue`, items encoded.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use multiproc_core::queue::QueueError;
use serde_bytes::ByteBuf;

use super::{Caller, Object, args, deadline, lock, ret, unknown, wait_until};
use crate::manager::error::ManagerError;

/// Python's `queue.Queue`, which a manager's `Queue()` is.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    maxsize: usize,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<ByteBuf>,
    unfinished: u64,
}

impl Object for Queue {
    fn typeid(&self) -> &str {
        "queue"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let state = lock(&self.state);
        match method {
            "put" => {
                let (item, block, timeout_ms): (ByteBuf, bool, Option<u64>) = args(method, a)?;
                let full = |s: &mut QueueState| self.maxsize != 0 && s.items.len() >= self.maxsize;
                let (mut state, room) = wait_until(
                    caller,
                    state,
                    &self.not_full,
                    deadline(block, timeout_ms),
                    |s| (!full(s)).then_some(()),
                )?;
                if room.is_none() {
                    return Err(ManagerError::Full);
                }
                state.items.push_back(item);
                state.unfinished += 1;
                self.not_empty.notify_one();
                ret(&())
            }
            "get" => {
                let (block, timeout_ms): (bool, Option<u64>) = args(method, a)?;
                let (_state, item) = wait_until(
                    caller,
                    state,
                    &self.not_empty,
                    deadline(block, timeout_ms),
                    |s| s.items.pop_front(),
                )?;
                let item = item.ok_or(ManagerError::Empty)?;
                self.not_full.notify_one();
                ret(&item)
            }
            "qsize" => ret(&(state.items.len() as u64)),
            "task_done" => {
                let mut state = state;
                if state.unfinished == 0 {
                    return Err(ManagerError::Misuse(
                        QueueError::TooManyTaskDone.to_string(),
                    ));
                }
                state.unfinished -= 1;
                if state.unfinished == 0 {
                    self.all_done.notify_all();
                }
                ret(&())
            }
            "join" => {
                let (timeout_ms,): (Option<u64>,) = args(method, a)?;
                let (_state, done) = wait_until(
                    caller,
                    state,
                    &self.all_done,
                    deadline(true, timeout_ms),
                    |s| (s.unfinished == 0).then_some(()),
                )?;
                ret(&done.is_some())
            }
            _ => Err(unknown("queue", method)),
        }
    }
}

impl Queue {
    /// An empty queue of at most `maxsize` items (0: unbounded).
    pub(crate) fn new(maxsize: usize) -> Queue {
        Queue {
            state: Mutex::default(),
            maxsize,
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        }
    }
}
