//! The built-in `lock`: Python's `threading.Lock`, released when the connection
//! that holds it closes.
//!
//! Who holds it, who waits in which order, and what a holder's death does are
//! `multiproc_core::sync::Sem`'s rules, the same state machine the tree's hosted
//! primitives use; a connection stands for a holder (its close is the holder's
//! death). This file only waits: each waiter sleeps on the condvar until the state
//! machine grants its wait, its timeout runs out (the wait is cancelled) or its
//! caller goes away.
//!
//! # Invariants
//!
//! - A wait the state machine granted is in `granted` until its waiter takes it;
//!   a waiter whose caller has gone passes the lock on, with the news of a death it
//!   carried, so a dead waiter takes nothing and a death is never forgotten.
//! - Waiters are granted in arrival order.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use multiproc_core::Identity;
use multiproc_core::sync::{Acquire, Grant, Holder, Sem, SemKind, WaitId};

use super::{Caller, ConnId, Object, args, deadline, lock, ret, unknown, wait_until};
use crate::manager::error::ManagerError;

/// Python's `threading.Lock`, which a manager's `Lock()` is; released when the
/// connection that holds it closes.
pub(crate) struct Lock {
    state: Mutex<LockState>,
    /// Signalled when a wait is granted.
    granted: Condvar,
}

struct LockState {
    sem: Sem,
    /// Granted waits not yet taken by their waiter, and whether each was told a
    /// holder died.
    granted: HashMap<WaitId, bool>,
    /// A death whose news a waiter that went away carried: told to the next holder.
    died: bool,
    next_wait: WaitId,
}

impl Default for Lock {
    fn default() -> Lock {
        Lock {
            state: Mutex::new(LockState {
                sem: Sem::new(SemKind::Lock, 1),
                granted: HashMap::new(),
                died: false,
                next_wait: 0,
            }),
            granted: Condvar::new(),
        }
    }
}

/// The holder a connection stands for: a "process" of its own, so that its close
/// is a death to the state machine.
fn holder(conn: ConnId) -> Holder {
    Holder {
        process: connection(conn),
        thread: 0,
    }
}

fn connection(conn: ConnId) -> Identity {
    Identity::from_path(vec![(conn >> 32) as u32, conn as u32])
}

impl LockState {
    /// Writes down the waits a release or a death granted, for their waiters.
    fn grant(&mut self, grants: Vec<Grant>) -> bool {
        let any = !grants.is_empty();
        for g in grants {
            self.granted.insert(g.wait, g.owner_died);
        }
        any
    }

    /// What the new holder is told: whether a holder died since the last grant.
    fn told(&mut self, owner_died: bool) -> bool {
        owner_died | std::mem::take(&mut self.died)
    }
}

impl Object for Lock {
    fn typeid(&self) -> &str {
        "lock"
    }

    fn call(&self, caller: &Caller<'_>, method: &str, a: &[u8]) -> Result<Vec<u8>, ManagerError> {
        let mut state = lock(&self.state);
        match method {
            "acquire" => {
                let (block, timeout_ms): (bool, Option<u64>) = args(method, a)?;
                let wait = state.next_wait;
                state.next_wait += 1;
                match state.sem.acquire(&holder(caller.conn), wait, block) {
                    Acquire::Granted { owner_died } => {
                        let died = state.told(owner_died);
                        ret(&(true, died))
                    }
                    Acquire::WouldBlock => ret(&(false, false)),
                    Acquire::Queued => {
                        drop(state);
                        self.wait(caller, wait, timeout_ms)
                    }
                }
            }
            "release" => {
                let grants = state
                    .sem
                    .release(&holder(caller.conn))
                    .map_err(|_| ManagerError::Misuse("release unlocked lock".into()))?;
                if state.grant(grants) {
                    self.granted.notify_all();
                }
                ret(&())
            }
            "locked" => ret(&state.sem.locked()),
            _ => Err(unknown("lock", method)),
        }
    }

    fn disconnected(&self, conn: ConnId) {
        let mut state = lock(&self.state);
        let grants = state.sem.process_died(&connection(conn));
        if state.grant(grants) {
            self.granted.notify_all();
        }
    }
}

impl Lock {
    /// Waits for the queued `wait` to be granted: `(true, died)` when it is,
    /// `(false, false)` when `timeout_ms` runs out (the wait is cancelled).
    fn wait(
        &self,
        caller: &Caller<'_>,
        wait: WaitId,
        timeout_ms: Option<u64>,
    ) -> Result<Vec<u8>, ManagerError> {
        let state = lock(&self.state);
        let waited = wait_until(
            caller,
            state,
            &self.granted,
            deadline(true, timeout_ms),
            |s| s.granted.remove(&wait),
        );
        match waited {
            Ok((mut state, Some(owner_died))) => {
                let died = state.told(owner_died);
                ret(&(true, died))
            }
            Ok((mut state, None)) => {
                // Timed out under the state's mutex: not granted, still queued.
                state.sem.cancel(wait);
                ret(&(false, false))
            }
            Err(gone) => {
                let mut state = lock(&self.state);
                match state.granted.remove(&wait) {
                    Some(owner_died) => {
                        // Handed to a waiter that has gone: it passes the lock on
                        // (unless someone released it for it meanwhile: anyone may).
                        state.died |= owner_died;
                        if let Ok(grants) = state.sem.release(&holder(caller.conn))
                            && state.grant(grants)
                        {
                            self.granted.notify_all();
                        }
                    }
                    None => {
                        state.sem.cancel(wait);
                    }
                }
                Err(gone)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use multiproc_core::codec;
    use multiproc_transport::blocking_pipe;

    use super::*;

    fn acquire(
        lock: &Lock,
        caller: &Caller<'_>,
        block: bool,
        timeout_ms: Option<u64>,
    ) -> Result<(bool, bool), ManagerError> {
        let a = codec::encode(&(block, timeout_ms)).unwrap();
        let out = lock.call(caller, "acquire", &a)?;
        Ok(codec::decode(&out).unwrap())
    }

    #[test]
    fn a_holders_close_frees_the_lock_and_the_next_holder_is_told() {
        let (ours, _theirs) = blocking_pipe(true).unwrap();
        let (one, two) = (
            Caller {
                conn: 1,
                link: &ours,
            },
            Caller {
                conn: 2,
                link: &ours,
            },
        );
        let lock = Lock::default();
        assert_eq!(acquire(&lock, &one, true, None).unwrap(), (true, false));
        assert_eq!(acquire(&lock, &two, false, None).unwrap(), (false, false));
        assert_eq!(
            acquire(&lock, &two, true, Some(10)).unwrap(),
            (false, false)
        );
        lock.disconnected(1);
        assert_eq!(acquire(&lock, &two, false, None).unwrap(), (true, true));
        lock.call(&two, "release", &codec::encode(&()).unwrap())
            .unwrap();
        assert!(matches!(
            lock.call(&two, "release", &codec::encode(&()).unwrap()),
            Err(ManagerError::Misuse(_))
        ));
        assert_eq!(acquire(&lock, &one, false, None).unwrap(), (true, false));
    }

    #[test]
    fn a_waiter_whose_caller_is_gone_takes_nothing() {
        let (ours, _theirs) = blocking_pipe(true).unwrap();
        let (hung_up, theirs) = blocking_pipe(true).unwrap();
        drop(theirs);
        let one = Caller {
            conn: 1,
            link: &ours,
        };
        let gone = Caller {
            conn: 2,
            link: &hung_up,
        };
        let lock = Lock::default();
        assert_eq!(acquire(&lock, &one, true, None).unwrap(), (true, false));
        assert!(matches!(
            acquire(&lock, &gone, true, None),
            Err(ManagerError::Gone(_))
        ));
        lock.call(&one, "release", &codec::encode(&()).unwrap())
            .unwrap();
        let three = Caller {
            conn: 3,
            link: &ours,
        };
        assert_eq!(acquire(&lock, &three, false, None).unwrap(), (true, false));
    }
}
