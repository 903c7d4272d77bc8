//! What happens to a push (or a second copy) that ends without a commit.

use std::sync::Arc;

use sluice_spill::WriteGroup;

use crate::metrics as m;
use crate::registry::{App, Shuffle};

/// Cleans up after a push that ends without a commit (an error, a refused batch, a lost
/// connection): armed until the commit succeeded. On drop it gives the epoch up; if
/// the push wrote anything, a blocking task waits for its writes in flight, then
/// punches holes where its blocks were in the partitions it touched
/// (`ShuffleStore::reclaim`) and returns the bytes to the quotas. A shuffle this push
/// created that ends with no commit and no other push open is removed with its files,
/// so a refused or abandoned push leaves no shape behind.
pub(crate) struct Reclaim {
    pub app: Arc<App>,
    pub shuffle_id: u32,
    pub shuffle: Arc<Shuffle>,
    pub epoch: u32,
    pub writes: Arc<WriteGroup>,
    pub armed: bool,
}

impl Drop for Reclaim {
    fn drop(&mut self) {
        let abandoned = self.armed && self.shuffle.abandon(self.epoch);
        let unused = self.app.push_ended(self.shuffle_id, &self.shuffle);
        let wrote = !self.writes.touched().is_empty();
        if !(unused || abandoned && wrote) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to reclaim an abandoned push on");
            return;
        };
        let (shuffle, epoch, writes) = (self.shuffle.clone(), self.epoch, self.writes.clone());
        runtime.spawn_blocking(move || {
            if unused {
                // Closed already: what is in flight indexes nothing and is freed here.
                if let Err(e) = shuffle.delete_files() {
                    tracing::warn!(error = %e, "removing a shuffle no push committed to");
                }
                return;
            }
            writes.wait_until_pending_at_most(0);
            match shuffle.store.reclaim(epoch, &writes.touched()) {
                Ok(bytes) => {
                    metrics::counter!(m::RECLAIMED_BYTES).increment(bytes);
                    tracing::debug!(epoch, bytes, "reclaimed an abandoned push");
                }
                Err(e) => tracing::warn!(epoch, error = %e, "reclaiming an abandoned push"),
            }
        });
    }
}
