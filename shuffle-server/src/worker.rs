//! A small pool of threads for CPU work (decode, split, compress) and the blocking file
//! appends that follow it, fed through a crossbeam channel so the tokio runtime only
//! moves bytes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use crossbeam_channel::{unbounded, Sender};
use tokio::sync::oneshot;

use crate::error::RequestError;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Clone)]
pub(crate) struct WorkerPool {
    jobs: Sender<Job>,
}

impl WorkerPool {
    pub(crate) fn new(threads: usize) -> Self {
        let (jobs, rx) = unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("sluice-worker-{i}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .expect("spawning a worker thread");
        }
        Self { jobs }
    }

    /// Runs `f` on a worker thread. A panic in `f` becomes an internal error for this
    /// request only.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, RequestError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| RequestError::Internal("worker pool stopped".into()))?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(panic = %what, "worker job panicked");
                Err(RequestError::Internal(format!("worker panicked: {what}")))
            }
            Err(_) => Err(RequestError::Internal("worker dropped the job".into())),
        }
    }
}
