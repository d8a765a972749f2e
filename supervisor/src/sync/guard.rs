//! Holding a lock or a semaphore for a scope: [`Guard`] and what it releases.

use super::SyncError;

/// Something a [`Guard`] releases.
pub trait Release {
    /// Releases it, blocking, ignoring errors (for `Drop`).
    fn release_now(&self);
}

/// Holds a lock or semaphore until dropped.
#[derive(Debug)]
pub struct Guard<'a, P: Release> {
    prim: &'a P,
    owner_died: bool,
}

impl<'a, P: Release> Guard<'a, P> {
    /// The guard of an acquire that blocked until it had `prim`: a dead previous
    /// holder is `owner_died`, not an error.
    pub(super) fn acquired(
        prim: &'a P,
        acquire: Result<bool, SyncError>,
    ) -> Result<Guard<'a, P>, SyncError> {
        let owner_died = match acquire {
            Ok(_) => false,
            Err(SyncError::OwnerDied) => true,
            Err(e) => return Err(e),
        };
        Ok(Guard { prim, owner_died })
    }

    /// Whether the previous holder died holding it.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl<P: Release> Drop for Guard<'_, P> {
    fn drop(&mut self) {
        self.prim.release_now();
    }
}
