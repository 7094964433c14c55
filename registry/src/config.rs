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
    /// Most TCP connections served at once. When full, a new connection takes the place of the
    /// oldest one not yet logged in (that one is told "server full"); if every connection is
    /// logged in, the new one is refused with "server full".
    pub max_clients: usize,
    /// Most connections from one source (an IPv4 address, or an IPv6 /64), logged in or not.
    /// Past it, the source's own oldest pre-login connection makes room, or the new one is
    /// refused: one address cannot take the slots everyone else needs.
    pub max_per_source: usize,
    /// Most connections not yet logged in, from all sources together; past it the oldest one is
    /// closed to make room for the new one.
    pub max_unauthenticated: usize,
    /// Largest frame body accepted.
    pub max_frame_len: u32,
    /// The hello must arrive within this long of accept.
    pub handshake_timeout: Duration,
    /// A started frame must complete within this long.
    pub frame_timeout: Duration,
    /// A connection must log in (or resume) within this long of its hello, of its last
    /// successful registration or of its logout, whatever else it sends: pings and failed
    /// attempts do not extend it, so a connection cannot hold a slot without logging in.
    pub idle_timeout: Duration,
    /// Frames decoded per connection per turn: one client's pipelined burst is served a slice
    /// at a time, round-robin with everyone else's.
    pub turn_frames: usize,
    /// Bytes of output (replies and events) one connection's frames may produce per turn.
    pub turn_bytes: usize,
    /// Unprocessed input a connection may have queued; past it the connection is closed with
    /// "server busy" (it sends requests much faster than it is served).
    pub max_input_backlog: usize,
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
            max_per_source: 1_000,
            max_unauthenticated: 2_048,
            max_frame_len: p2pchat_protocol::DEFAULT_MAX_FRAME,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            turn_frames: 64,
            turn_bytes: 64 * 1024,
            max_input_backlog: 1024 * 1024,
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
