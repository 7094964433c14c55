//! [`StoreHandle`]: the store thread, its bounded job queue and its reply channel.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;

use super::{SqliteStore, StoreDone, StoreJob, MAX_BATCH};

/// The store thread. It owns the [`SqliteStore`] and writes jobs in batches (group commit).
///
/// The reactor thread submits jobs with [`StoreHandle::submit`] and, after each `notify`,
/// drains replies with [`StoreHandle::try_recv`]. Dropping the handle shuts the thread down as
/// [`StoreHandle::shutdown`] does.
pub struct StoreHandle {
    /// `None` once the queue is closed.
    jobs: Option<SyncSender<StoreJob>>,
    done: Receiver<StoreDone>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("open", &self.jobs.is_some())
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Starts the thread `p2pchat-store` with a queue of `capacity` jobs (at least 1).
    /// `notify` is called on the store thread once per committed batch, after its replies are
    /// on the channel; the binary passes a closure that wakes its reactor.
    ///
    /// Panics if the OS cannot create a thread, as `std::thread::spawn` does; use
    /// [`StoreHandle::try_spawn`] to handle that as an error.
    pub fn spawn(store: SqliteStore, capacity: usize, notify: Box<dyn Fn() + Send>) -> StoreHandle {
        // NOTE(unwrap): invariant: thread creation fails only when the process is out of
        // resources at startup, where std::thread::spawn panics too.
        Self::try_spawn(store, capacity, notify).expect("cannot start the p2pchat-store thread")
    }

    /// [`StoreHandle::spawn`], reporting a failure to create the thread.
    pub fn try_spawn(
        store: SqliteStore,
        capacity: usize,
        notify: Box<dyn Fn() + Send>,
    ) -> std::io::Result<StoreHandle> {
        // A zero-capacity sync_channel is a rendezvous, which would refuse every job the
        // thread is not already blocked waiting for; one slot is the least useful queue.
        let (job_tx, job_rx) = mpsc::sync_channel(capacity.max(1));
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("p2pchat-store".into())
            .spawn(move || run(store, job_rx, done_tx, notify))?;
        Ok(StoreHandle {
            jobs: Some(job_tx),
            done: done_rx,
            thread: Some(thread),
        })
    }

    /// Queues `job`, or hands it back at once when the queue is full (or the thread has
    /// stopped), so the caller can answer "busy, try again".
    pub fn submit(&self, job: StoreJob) -> Result<(), StoreJob> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(job),
            Err(TrySendError::Disconnected(job)) => {
                log::error!(
                    "store: the store thread has stopped; job {} refused",
                    job.id
                );
                Err(job)
            }
        }
    }

    /// The next reply, if one is ready. Never blocks.
    pub fn try_recv(&self) -> Option<StoreDone> {
        // Disconnected means the thread is gone; submit() reports that, so here it is
        // simply "nothing ready".
        self.done.try_recv().ok()
    }

    /// Closes the queue, lets the thread commit every job already queued, and joins it; the
    /// `Connection` is closed on the store thread (SQLite checkpoints the WAL then). Replies
    /// that were not yet received are dropped; use [`StoreHandle::shutdown_and_drain`] to
    /// keep them.
    pub fn shutdown(mut self) {
        self.close_and_join();
    }

    /// [`StoreHandle::shutdown`], returning every reply not yet received, in order.
    pub fn shutdown_and_drain(mut self) -> Vec<StoreDone> {
        self.close_and_join();
        self.done.try_iter().collect()
    }

    fn close_and_join(&mut self) {
        // Dropping the only sender makes the thread's recv() fail once the queue is empty.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("store: the store thread panicked");
            }
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.close_and_join();
    }
}

/// The store thread's loop: block for a job, take whatever else is queued (up to
/// [`MAX_BATCH`]), commit it as one batch, send the replies, notify. Ends when the queue is
/// closed and empty, or when nobody listens for replies any more.
fn run(
    mut store: SqliteStore,
    jobs: Receiver<StoreJob>,
    done: Sender<StoreDone>,
    notify: Box<dyn Fn() + Send>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH.min(16));
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let count = batch.len();
        for reply in store.apply(batch) {
            if done.send(reply).is_err() {
                log::warn!("store: reply channel closed; store thread stopping");
                return;
            }
        }
        log::trace!("store: committed a batch of {count}");
        notify();
    }
    log::debug!("store: queue closed; store thread stopping");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Snapshot, StoreError, StoreOk, StoreRequest};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tempfile::TempDir;

    const WAIT: Duration = Duration::from_secs(10);

    fn open(dir: &TempDir) -> (SqliteStore, Snapshot) {
        SqliteStore::open(&dir.path().join("registry.db")).unwrap()
    }

    fn create(id: u64, name: &str) -> StoreJob {
        StoreJob {
            id,
            request: StoreRequest::CreateAccount {
                name: name.into(),
                salt: [1; 16],
                iterations: 1,
                hash: [2; 32],
                created_ms: 3,
            },
        }
    }

    /// A notify callback that reports each call on a channel, so tests wait on events rather
    /// than sleeping.
    fn notifier() -> (Box<dyn Fn() + Send>, Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let notify = move || {
            let _ = tx.send(());
        };
        (Box::new(notify), rx)
    }

    /// Waits for notifications until `n` replies have arrived.
    fn collect(handle: &StoreHandle, woken: &Receiver<()>, n: usize) -> Vec<StoreDone> {
        let mut replies = Vec::new();
        while replies.len() < n {
            woken
                .recv_timeout(WAIT)
                .expect("store thread never notified");
            while let Some(done) = handle.try_recv() {
                replies.push(done);
            }
        }
        replies
    }

    #[test]
    fn round_trip_with_notify() {
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, woken) = mpsc::channel();
        let counted = Arc::clone(&calls);
        let notify = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        };
        let handle = StoreHandle::spawn(store, 8, Box::new(notify));
        assert!(handle.try_recv().is_none());
        handle.submit(create(10, "alice")).unwrap();
        let replies = collect(&handle, &woken, 1);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].id, 10);
        assert!(matches!(replies[0].result, Ok(StoreOk::Account(_))));
        handle.submit(create(11, "alice")).unwrap();
        let replies = collect(&handle, &woken, 1);
        assert_eq!(replies[0].id, 11);
        assert_eq!(replies[0].result, Err(StoreError::NameTaken));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        handle.shutdown();
        let (_, snapshot) = open(&dir);
        assert_eq!(snapshot.accounts.len(), 1);
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        // The first batch's notify reports that it has started, then blocks until the test
        // releases it, so the thread is busy and the queue state is known exactly.
        let (entered_tx, entered) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let notify = move || {
            let _ = entered_tx.send(());
            // Returns once the test drops `release`.
            let _ = gate.recv();
        };
        let handle = StoreHandle::spawn(store, 1, Box::new(notify));
        handle.submit(create(1, "a")).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        // The thread is stuck in notify; the one slot takes one job, the next is refused.
        handle.submit(create(2, "b")).unwrap();
        let refused = handle.submit(create(3, "c")).unwrap_err();
        assert_eq!(refused, create(3, "c"));
        drop(release);
        let replies = handle.shutdown_and_drain();
        let ids: Vec<u64> = replies.iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 2]);
        let (_, snapshot) = open(&dir);
        let names: Vec<_> = snapshot.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn shutdown_commits_the_queued_jobs() {
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        let (notify, _woken) = notifier();
        let handle = StoreHandle::spawn(store, 64, notify);
        for i in 0..50 {
            handle.submit(create(i, &format!("user{i}"))).unwrap();
        }
        let replies = handle.shutdown_and_drain();
        assert_eq!(replies.len(), 50);
        for (i, done) in replies.iter().enumerate() {
            assert_eq!(done.id, i as u64);
            assert!(matches!(done.result, Ok(StoreOk::Account(_))), "{done:?}");
        }
        let (_, snapshot) = open(&dir);
        assert_eq!(snapshot.accounts.len(), 50);
        assert_eq!(snapshot.accounts[49].name, "user49");
    }

    #[test]
    fn the_loop_drains_a_closed_queue_in_batches() {
        // Drive run() directly: fill the queue, close it, and check that every job is
        // committed, in batches of at most MAX_BATCH, before the loop ends.
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        let total = MAX_BATCH + 10;
        let (job_tx, job_rx) = mpsc::sync_channel(total);
        for i in 0..total {
            job_tx.try_send(create(i as u64, &format!("u{i}"))).unwrap();
        }
        drop(job_tx);
        let (done_tx, done_rx) = mpsc::channel();
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&batches);
        let notify = move || {
            counted.fetch_add(1, Ordering::SeqCst);
        };
        run(store, job_rx, done_tx, Box::new(notify));
        assert_eq!(batches.load(Ordering::SeqCst), 2);
        assert_eq!(done_rx.try_iter().count(), total);
        let (_, snapshot) = open(&dir);
        assert_eq!(snapshot.accounts.len(), total);
    }

    #[test]
    fn drop_without_shutdown_still_commits() {
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        let (notify, _woken) = notifier();
        let handle = StoreHandle::spawn(store, 4, notify);
        handle.submit(create(1, "kept")).unwrap();
        drop(handle);
        let (_, snapshot) = open(&dir);
        assert_eq!(snapshot.accounts.len(), 1);
    }
}
