//! Password hashing off the reactor thread: PBKDF2-HMAC-SHA256 on a small pool of threads.
//!
//! One PBKDF2 run at the default 600,000 iterations takes about 180 ms, far too long for the
//! reactor. The core emits a [`HashJob`] (an id it chooses plus a [`HashRequest`]); the binary
//! submits it to the [`HashPool`], whose threads share one bounded queue. Each result comes back
//! as a [`HashDone`] on a channel, followed by a call to `notify` so the reactor wakes up and
//! feeds it to the core as `Input::HashDone`. A full queue hands the job straight back, so the
//! core can answer "busy, try again". [`run_hash`] is the same computation, synchronous, for
//! the simulator and tests.
//!
//! Passwords never reach a log through `{:?}`: the `Debug` impls here redact them, and a
//! worker overwrites the password buffer with zeros once it is done with it.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ring::pbkdf2;

/// Work for a hashing thread.
#[derive(Clone, PartialEq, Eq)]
pub enum HashRequest {
    /// Derive the hash of a new password (registration).
    Derive {
        /// The password bytes; zeroed by the worker after use.
        password: Vec<u8>,
        /// Random salt for the new account.
        salt: [u8; 16],
        /// PBKDF2 iteration count to derive with.
        iterations: u32,
    },
    /// Check a password against a stored hash (login), in constant time.
    Verify {
        /// The password bytes to check; zeroed by the worker after use.
        password: Vec<u8>,
        /// The account's stored salt.
        salt: [u8; 16],
        /// The account's stored PBKDF2 iteration count.
        iterations: u32,
        /// The account's stored hash.
        expected: [u8; 32],
    },
}

/// The answer to a [`HashRequest`] of the same kind.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HashResult {
    /// The PBKDF2-HMAC-SHA256 hash from a [`HashRequest::Derive`].
    Derived([u8; 32]),
    /// Whether the password of a [`HashRequest::Verify`] matched.
    Verified(bool),
}

/// A request tagged with the core's id for matching the reply.
#[derive(Clone, PartialEq, Eq)]
pub struct HashJob {
    /// The core's id, echoed in the matching [`HashDone`].
    pub id: u64,
    /// The work to do.
    pub request: HashRequest,
}

/// The reply to the [`HashJob`] with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashDone {
    /// The id of the [`HashJob`] this answers.
    pub id: u64,
    /// The outcome.
    pub result: HashResult,
}

impl HashRequest {
    /// Overwrites the password with zeros. Best effort: earlier copies made by whoever built
    /// the request (a decode buffer, a reallocation) are out of reach.
    fn wipe_password(&mut self) {
        let (HashRequest::Derive { password, .. } | HashRequest::Verify { password, .. }) = self;
        password.fill(0);
        // Keeps the compiler from discarding the writes to a buffer about to be freed.
        std::hint::black_box(&password);
    }
}

impl fmt::Debug for HashRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashRequest::Derive { iterations, .. } => f
                .debug_struct("Derive")
                .field("password", &"<redacted>")
                .field("salt", &"<redacted>")
                .field("iterations", iterations)
                .finish(),
            HashRequest::Verify { iterations, .. } => f
                .debug_struct("Verify")
                .field("password", &"<redacted>")
                .field("salt", &"<redacted>")
                .field("iterations", iterations)
                .field("expected", &"<redacted>")
                .finish(),
        }
    }
}

impl fmt::Debug for HashJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashJob")
            .field("id", &self.id)
            .field("request", &self.request)
            .finish()
    }
}

impl fmt::Debug for HashResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashResult::Derived(_) => f.write_str("Derived(<redacted>)"),
            HashResult::Verified(ok) => f.debug_tuple("Verified").field(ok).finish(),
        }
    }
}

/// Runs one request on the calling thread: PBKDF2-HMAC-SHA256 with a 32-byte output.
/// Verification compares in constant time. An iteration count of 0 is treated as 1.
pub fn run_hash(request: &HashRequest) -> HashResult {
    let algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
    match request {
        HashRequest::Derive {
            password,
            salt,
            iterations,
        } => {
            let mut out = [0u8; 32];
            pbkdf2::derive(algorithm, non_zero(*iterations), salt, password, &mut out);
            HashResult::Derived(out)
        }
        HashRequest::Verify {
            password,
            salt,
            iterations,
            expected,
        } => {
            let ok = pbkdf2::verify(algorithm, non_zero(*iterations), salt, password, expected);
            HashResult::Verified(ok.is_ok())
        }
    }
}

fn non_zero(iterations: u32) -> NonZeroU32 {
    NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN)
}

/// The hashing threads and their shared bounded queue.
///
/// Dropping the pool shuts it down as [`HashPool::shutdown`] does.
pub struct HashPool {
    /// `None` once the queue is closed.
    jobs: Option<SyncSender<HashJob>>,
    done: Receiver<HashDone>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for HashPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashPool")
            .field("threads", &self.threads.len())
            .field("open", &self.jobs.is_some())
            .finish_non_exhaustive()
    }
}

impl HashPool {
    /// Starts `threads` threads (at least 1) named `p2pchat-hash-N`, sharing a queue of
    /// `capacity` jobs (at least 1). `notify` is called on a hashing thread after each result
    /// is on the channel; the binary passes a closure that wakes its reactor.
    ///
    /// Panics if the OS cannot create a thread, as `std::thread::spawn` does; use
    /// [`HashPool::try_spawn`] to handle that as an error.
    pub fn spawn(threads: usize, capacity: usize, notify: Arc<dyn Fn() + Send + Sync>) -> HashPool {
        // NOTE(unwrap): invariant: thread creation fails only when the process is out of
        // resources at startup, where std::thread::spawn panics too.
        Self::try_spawn(threads, capacity, notify).expect("cannot start the p2pchat-hash threads")
    }

    /// [`HashPool::spawn`], reporting a failure to create a thread (the threads already
    /// started are stopped first).
    pub fn try_spawn(
        threads: usize,
        capacity: usize,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<HashPool> {
        // A zero-capacity sync_channel is a rendezvous; one slot is the least useful queue.
        let (job_tx, job_rx) = mpsc::sync_channel(capacity.max(1));
        let (done_tx, done_rx) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut pool = HashPool {
            jobs: Some(job_tx),
            done: done_rx,
            stopping: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(threads.max(1)),
        };
        for n in 0..threads.max(1) {
            let worker = Worker {
                jobs: Arc::clone(&job_rx),
                done: done_tx.clone(),
                notify: Arc::clone(&notify),
                stopping: Arc::clone(&pool.stopping),
            };
            let thread = std::thread::Builder::new()
                .name(format!("p2pchat-hash-{n}"))
                .spawn(move || worker.run())?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Queues `job`, or hands it back at once when the queue is full (or the pool has
    /// stopped), so the caller can answer "busy, try again".
    pub fn submit(&self, job: HashJob) -> Result<(), HashJob> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(job),
            Err(TrySendError::Disconnected(job)) => {
                log::error!(
                    "hash: every hashing thread has stopped; job {} refused",
                    job.id
                );
                Err(job)
            }
        }
    }

    /// The next result, if one is ready. Never blocks.
    pub fn try_recv(&self) -> Option<HashDone> {
        // Disconnected means the thread is gone; submit() reports that, so here it is
        // simply "nothing ready".
        self.done.try_recv().ok()
    }

    /// Stops the pool: each thread finishes the hash it is computing, queued jobs are dropped
    /// unhashed (at shutdown nobody waits for them, and each would cost up to 180 ms), and
    /// the threads are joined.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.jobs = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("hash: a hashing thread panicked");
            }
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// What one hashing thread owns.
struct Worker {
    jobs: Arc<Mutex<Receiver<HashJob>>>,
    done: Sender<HashDone>,
    notify: Arc<dyn Fn() + Send + Sync>,
    stopping: Arc<AtomicBool>,
}

impl Worker {
    /// Takes jobs until the queue is closed and empty, the pool is stopping, or nobody
    /// listens for results. Never panics the process: a poisoned lock ends this thread.
    fn run(self) {
        loop {
            let next = match self.jobs.lock() {
                // Holding the lock while blocked in recv() is what shares the queue: the
                // other idle threads wait on the lock, and the holder releases it as soon as
                // it has a job.
                Ok(jobs) => jobs.recv(),
                Err(_) => {
                    log::error!("hash: job queue lock poisoned; hashing thread stopping");
                    return;
                }
            };
            let Ok(mut job) = next else {
                log::debug!("hash: queue closed; hashing thread stopping");
                return;
            };
            if self.stopping.load(Ordering::SeqCst) {
                job.request.wipe_password();
                continue;
            }
            let result = run_hash(&job.request);
            job.request.wipe_password();
            if self.done.send(HashDone { id: job.id, result }).is_err() {
                log::debug!("hash: result channel closed; hashing thread stopping");
                return;
            }
            (self.notify)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(30);

    fn derive(password: &[u8], salt: [u8; 16], iterations: u32) -> [u8; 32] {
        let request = HashRequest::Derive {
            password: password.to_vec(),
            salt,
            iterations,
        };
        match run_hash(&request) {
            HashResult::Derived(hash) => hash,
            other => panic!("derive answered {other:?}"),
        }
    }

    fn verify(password: &[u8], salt: [u8; 16], iterations: u32, expected: [u8; 32]) -> bool {
        let request = HashRequest::Verify {
            password: password.to_vec(),
            salt,
            iterations,
            expected,
        };
        match run_hash(&request) {
            HashResult::Verified(ok) => ok,
            other => panic!("verify answered {other:?}"),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn derive_then_verify() {
        let salt = [9; 16];
        let hash = derive(b"correct horse", salt, 10);
        assert!(verify(b"correct horse", salt, 10, hash));
        assert!(!verify(b"wrong horse", salt, 10, hash));
        // Salt and iteration count are part of the hash.
        assert!(!verify(b"correct horse", [8; 16], 10, hash));
        assert!(!verify(b"correct horse", salt, 11, hash));
    }

    #[test]
    fn known_answer_vectors() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1. The RFC gives
        // 64 bytes; the first 32 are the first block, which is our 32-byte output.
        // ring's derive takes a 16-byte salt from us, so call it directly for "salt".
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::MIN,
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        // A 16-byte salt through run_hash, checked against Python's
        // hashlib.pbkdf2_hmac("sha256", b"password", b"0123456789abcdef", 1).
        let salt = *b"0123456789abcdef";
        let hash = derive(b"password", salt, 1);
        assert_eq!(
            hex(&hash),
            "ef9d5f6add4a5d19f4a7fc92b48f2351ea95bb977642c0071ed4e4010a42cb6c"
        );
    }

    #[test]
    fn zero_iterations_count_as_one() {
        let salt = [3; 16];
        assert_eq!(derive(b"pw", salt, 0), derive(b"pw", salt, 1));
        assert!(verify(b"pw", salt, 0, derive(b"pw", salt, 1)));
    }

    #[test]
    fn debug_redacts_secrets() {
        let job = HashJob {
            id: 7,
            request: HashRequest::Verify {
                password: b"hunter22".to_vec(),
                salt: [0xAB; 16],
                iterations: 5,
                expected: [0xCD; 32],
            },
        };
        let text = format!("{job:?}");
        assert!(text.contains("redacted") && text.contains('7'), "{text}");
        assert!(!text.contains("hunter") && !text.contains("104"), "{text}");
        assert!(!text.contains("171") && !text.contains("205"), "{text}");
        let text = format!("{:?}", HashResult::Derived([0xCD; 32]));
        assert!(!text.contains("205"), "{text}");
    }

    #[test]
    fn wipe_zeroes_the_password() {
        let mut request = HashRequest::Derive {
            password: b"secret-pw".to_vec(),
            salt: [0; 16],
            iterations: 1,
        };
        request.wipe_password();
        let HashRequest::Derive { password, .. } = &request else {
            unreachable!()
        };
        assert_eq!(password, &[0u8; 9]);
    }

    /// A notify callback that reports each call on a channel.
    fn notifier() -> (Arc<dyn Fn() + Send + Sync>, Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let notify = move || {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(());
            }
        };
        (Arc::new(notify), rx)
    }

    #[test]
    fn pool_round_trip_on_several_threads() {
        let (notify, woken) = notifier();
        let pool = HashPool::spawn(4, 64, notify);
        let salt = [5; 16];
        let expected = derive(b"pw-1", salt, 50);
        let mut want = std::collections::BTreeMap::new();
        for id in 0..32u64 {
            let request = if id % 2 == 0 {
                HashRequest::Derive {
                    password: format!("pw-{id}").into_bytes(),
                    salt,
                    iterations: 50,
                }
            } else {
                HashRequest::Verify {
                    password: if id == 1 {
                        b"pw-1".to_vec()
                    } else {
                        b"nope".to_vec()
                    },
                    salt,
                    iterations: 50,
                    expected,
                }
            };
            want.insert(id, run_hash(&request));
            pool.submit(HashJob { id, request }).unwrap();
        }
        let mut got = std::collections::BTreeMap::new();
        while got.len() < want.len() {
            woken.recv_timeout(WAIT).expect("hash pool never notified");
            while let Some(done) = pool.try_recv() {
                assert!(
                    got.insert(done.id, done.result).is_none(),
                    "duplicate reply"
                );
            }
        }
        assert_eq!(got, want);
        assert_eq!(got[&1], HashResult::Verified(true));
        assert_eq!(got[&3], HashResult::Verified(false));
        pool.shutdown();
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        // The single thread's notify reports that it has started, then blocks until the test
        // releases it, so the thread is busy and the queue state is known exactly.
        let (entered_tx, entered) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let blocked = Mutex::new((entered_tx, gate));
        let notify = move || {
            if let Ok(guard) = blocked.lock() {
                let _ = guard.0.send(());
                // Returns once the test drops `release`.
                let _ = guard.1.recv();
            }
        };
        let pool = HashPool::spawn(1, 1, Arc::new(notify));
        let job = |id| HashJob {
            id,
            request: HashRequest::Derive {
                password: b"pw".to_vec(),
                salt: [0; 16],
                iterations: 1,
            },
        };
        pool.submit(job(1)).unwrap();
        entered.recv_timeout(WAIT).unwrap();
        pool.submit(job(2)).unwrap();
        let refused = pool.submit(job(3)).unwrap_err();
        assert_eq!(refused.id, 3);
        assert_eq!(pool.try_recv().map(|d| d.id), Some(1));
        drop(release);
        // Job 2 was still queued or already hashed; either way shutdown returns promptly.
        pool.shutdown();
    }
}
