//! Registry tunables. Defaults are the production values of DESIGN.md §6; tests shrink them.

use std::time::Duration;

/// Registry configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// A session expires after this long without a valid heartbeat.
    pub heartbeat_timeout: Duration,
    /// How often peers are told to heartbeat (default: a third of the timeout).
    pub heartbeat_interval: Duration,
    /// PBKDF2 iterations for new passwords (existing accounts keep theirs).
    pub pbkdf2_iterations: u32,
    /// Most TCP connections served at once; the next gets "server full".
    pub max_clients: usize,
    /// Largest frame body accepted.
    pub max_frame_len: u32,
    /// The hello must arrive within this long of accept.
    pub handshake_timeout: Duration,
    /// A started frame must complete within this long.
    pub frame_timeout: Duration,
    /// A connection that is not logged in and sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Password attempts (register + login) per source address per minute.
    pub auth_rate_per_min: u32,
    /// Burst of password attempts per source address.
    pub auth_burst: u32,
    /// Resumes per source address per minute (cheap, so generous).
    pub resume_rate_per_min: u32,
    /// Burst of resumes per source address.
    pub resume_burst: u32,
    /// Consecutive failed logins of one account before backoff starts.
    pub backoff_after: u32,
    /// Longest per-account backoff.
    pub backoff_max: Duration,
    /// How long a resume token stays valid.
    pub resume_window: Duration,
    /// Password hashes queued or running at once; more get "busy, try again".
    pub max_pending_hashes: usize,
    /// Store writes queued or running at once; more get "busy, try again".
    pub max_pending_stores: usize,
    /// The UDP port heartbeats go to, announced at login (set by the binary after binding).
    pub udp_port: u16,
    /// Largest page of `ListOnline`/`ListRooms`.
    pub max_page: u16,
}

impl Default for Config {
    fn default() -> Self {
        let heartbeat_timeout = Duration::from_secs(20);
        Config {
            heartbeat_timeout,
            heartbeat_interval: heartbeat_timeout / 3,
            pbkdf2_iterations: 600_000,
            max_clients: 10_000,
            max_frame_len: p2pchat_protocol::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            auth_rate_per_min: 60,
            auth_burst: 30,
            resume_rate_per_min: 600,
            resume_burst: 300,
            backoff_after: 5,
            backoff_max: Duration::from_secs(300),
            resume_window: Duration::from_secs(24 * 3600),
            max_pending_hashes: 64,
            max_pending_stores: 4096,
            udp_port: 15500,
            max_page: 1000,
        }
    }
}

impl Config {
    /// Sets the heartbeat timeout and derives the interval from it (a third, DESIGN §6). One lost
    /// heartbeat never expires a session; two consecutive losses leave only the third heartbeat,
    /// due right at the deadline, so they expire it unless it arrives early (the simulator
    /// measures this: docs/performance.md).
    pub fn with_heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self.heartbeat_interval = timeout / 3;
        self
    }
}
