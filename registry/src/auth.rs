//! Account operations: register, login, resume, logout, rename, search and the online list,
//! with the hash and store completions that finish them.
//!
//! Every slow step leaves the state machine as an output (`Hash`, `Store`) and comes back as an
//! input; meanwhile the request is remembered in `pending`. A reply is sent only after the write
//! it depends on is durable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2pchat_protocol::names::{is_valid_name, is_valid_password};
use p2pchat_protocol::{status, Msg, Presence as Where};
use rand::RngCore;
use ring::digest;

use crate::hasher::{HashDone, HashRequest, HashResult};
use crate::io::{ConnId, Event, OfflineReason};
use crate::limits::source_key;
use crate::registry::{ConnState, Pending, Registry, TOKEN_RETRY_FIRST, TOKEN_RETRY_MAX};
use crate::store::{AccountId, AccountRecord, StoreDone, StoreError, StoreOk, StoreRequest};

/// Default page of the online list when the client asks for 0.
const DEFAULT_PAGE: u16 = 100;

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn token_hash(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

impl Registry {
    /// Takes a token from the password-attempt bucket of the connection's source, or answers
    /// "rate limited" and returns false.
    fn allow_auth(&mut self, now: Instant, conn: ConnId, id: u32, resume: bool) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        let ip = c.remote.ip();
        let limit = if resume {
            &mut self.resume_limit
        } else {
            &mut self.auth_limit
        };
        match limit.take(ip, now) {
            Ok(()) => true,
            Err(wait) => {
                self.stats.rate_limited += 1;
                let msg = format!(
                    "too many attempts from your address, try again in {}s",
                    secs_ceil(wait)
                );
                self.reply_error(conn, id, status::RATE_LIMITED, &msg);
                false
            }
        }
    }

    /// The checks a login and a resume share: not logged in already, no other attempt in flight
    /// on this connection, and the source's rate bucket. Answers and returns false if one fails.
    fn may_authenticate(&mut self, now: Instant, conn: ConnId, id: u32, resume: bool) -> bool {
        if self.logged_in(conn).is_some() {
            self.error(conn, id, status::ALREADY_LOGGED_IN);
            return false;
        }
        if self.conns.get(&conn).is_some_and(|c| c.auth_in_flight) {
            self.busy(conn, id);
            return false;
        }
        self.allow_auth(now, conn, id, resume)
    }

    pub(crate) fn handle_register(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u32,
        name: String,
        password: String,
    ) {
        if !is_valid_name(&name) {
            return self.error(conn, id, status::INVALID_NAME);
        }
        if !is_valid_password(&password) {
            return self.error(conn, id, status::INVALID_PASSWORD);
        }
        if !self.allow_auth(now, conn, id, false) {
            return;
        }
        if self.accounts.is_taken(&name) {
            return self.error(conn, id, status::NAME_TAKEN);
        }
        if self.hashes_in_flight >= self.config.max_pending_hashes {
            return self.busy(conn, id);
        }
        let mut salt = [0u8; 16];
        self.rng.fill_bytes(&mut salt);
        let iterations = self.config.pbkdf2_iterations;
        self.accounts.reserve(&name);
        self.submit_hash(
            HashRequest::Derive {
                password: password.into_bytes(),
                salt,
                iterations,
            },
            Pending::RegisterHash {
                conn,
                req: id,
                name,
                salt,
                iterations,
            },
        );
    }

    pub(crate) fn handle_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u32,
        name: String,
        password: String,
        listen: SocketAddr,
    ) {
        if !self.may_authenticate(now, conn, id, false) {
            return;
        }
        let Some(source) = self.conns.get(&conn).map(|c| source_key(c.remote.ip())) else {
            return;
        };
        // Throttled per account *and source*: a stranger's failures from elsewhere never delay
        // the owner (no lockout of a name by someone else); see docs/architecture.md.
        let key = (name.clone(), source);
        if let Some(wait) = self.backoff.wait(&key, now) {
            let msg = format!(
                "too many failed attempts, try again in {}s",
                secs_ceil(wait)
            );
            return self.reply_error(conn, id, status::LOCKED_OUT, &msg);
        }
        if self.hashes_in_flight >= self.config.max_pending_hashes {
            return self.busy(conn, id);
        }
        // Counted as a failure now, forgiven if the hash says the password is right: the check
        // above and this count happen together, so guesses in flight at once see each other.
        self.backoff.fail(key, now);
        let account = self.accounts.by_name(&name);
        let (salt, iterations, expected, account) = match account {
            Some(a) => (a.salt, a.iterations, a.hash, Some(a.id)),
            None => (
                self.dummy.0,
                self.config.pbkdf2_iterations,
                self.dummy.1,
                None,
            ),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth_in_flight = true;
        }
        self.submit_hash(
            HashRequest::Verify {
                password: password.into_bytes(),
                salt,
                iterations,
                expected,
            },
            Pending::LoginHash {
                conn,
                req: id,
                name,
                source,
                account,
                listen,
            },
        );
    }

    pub(crate) fn handle_resume(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u32,
        name: String,
        token: Vec<u8>,
        listen: SocketAddr,
    ) {
        if !self.may_authenticate(now, conn, id, true) {
            return;
        }
        let wall = self.wall_ms(now);
        // Comparing SHA-256 digests: an attacker cannot steer the digest's bytes, so an early
        // exit in the comparison leaks nothing useful about the stored token.
        let account = self.accounts.by_name(&name).filter(|a| {
            a.resume
                .is_some_and(|(h, expires)| h == token_hash(&token) && wall < expires)
        });
        let Some(account) = account.map(|a| a.id) else {
            return self.error(conn, id, status::BAD_RESUME_TOKEN);
        };
        // The token proves this is the account's owner: a session still online elsewhere is
        // one the owner lost (half-open connection, sleeping laptop), so it is replaced.
        if let Some(old) = self.presence.session_of(account) {
            let old_conn = self.presence.get(old).map(|s| s.conn);
            self.end_session(old, OfflineReason::Replaced);
            if let Some(old_conn) = old_conn {
                if let Some(c) = self.conns.get_mut(&old_conn) {
                    c.state = ConnState::ExpectLogin;
                }
                self.close_with(
                    old_conn,
                    status::ALREADY_ONLINE,
                    "session resumed from another connection",
                    crate::io::CloseReason::Replaced,
                );
            }
        }
        self.start_session(now, conn, id, account, listen);
    }

    /// Issues a new resume token and, once it is durable, the session.
    fn start_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u32,
        account: AccountId,
        listen: SocketAddr,
    ) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        if self.presence.session_of(account).is_some() || self.starting.contains(&account) {
            return self.error(conn, id, status::ALREADY_ONLINE);
        }
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        let mut token = vec![0u8; 32];
        self.rng.fill_bytes(&mut token);
        let token_hash = token_hash(&token);
        let window = i64::try_from(self.config.resume_window.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = self.wall_ms(now).saturating_add(window);
        self.starting.insert(account);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.auth_in_flight = true;
        }
        self.submit_store(
            StoreRequest::SetResumeToken {
                account_id: account,
                token_hash,
                expires_ms,
            },
            Pending::SessionToken {
                conn,
                req: id,
                account,
                listen,
                token,
                token_hash,
                expires_ms,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn open_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: u32,
        account: AccountId,
        listen: SocketAddr,
        token: Vec<u8>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.state != ConnState::ExpectLogin {
            return;
        }
        let Some(name) = self.accounts.by_id(account).map(|a| a.name.clone()) else {
            return;
        };
        // The listener bound to 0.0.0.0 means "wherever you see me": use the TCP source.
        let advertised = if listen.ip().is_unspecified() {
            SocketAddr::new(c.remote.ip(), listen.port())
        } else {
            listen
        };
        let session = loop {
            let s = self.rng.next_u64();
            if s != 0 && !self.presence.contains(s) {
                break s;
            }
        };
        let mut key = [0u8; 32];
        self.rng.fill_bytes(&mut key);
        let deadline = now + self.config.heartbeat_timeout;
        self.presence.insert(
            session,
            account,
            Arc::clone(&name),
            conn,
            &key,
            advertised,
            deadline,
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::LoggedIn { account, session };
        }
        self.admission.set_logged_in(conn);
        self.disarm_idle(conn);
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let reply = Msg::LoggedIn {
            name: name.to_string(),
            session,
            heartbeat_key: key,
            heartbeat_interval_ms: ms(self.config.heartbeat_interval),
            heartbeat_timeout_ms: ms(self.config.heartbeat_timeout),
            resume_token: token,
            udp_port: self.config.udp_port,
            advertised,
        };
        self.reply(conn, id, reply);
        let online = p2pchat_protocol::RoomEvent::Online {
            name: name.to_string(),
            addr: advertised,
        };
        self.push_to_rooms_of(account, online);
        self.push_memberships(conn, account);
        self.event(Event::Online {
            name: name.to_string(),
            addr: advertised,
        });
    }

    pub(crate) fn handle_logout(&mut self, now: Instant, conn: ConnId, id: u32) {
        let Some((account, session)) = self.logged_in(conn) else {
            return self.error(conn, id, status::NOT_LOGGED_IN);
        };
        self.end_session(session, OfflineReason::Logout);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::ExpectLogin;
            self.admission.set_prelogin(conn, c.remote.ip());
        }
        self.arm_idle(now, conn);
        // A deliberate logout ends automatic re-login too.
        if let Some(a) = self.accounts.by_id_mut(account) {
            a.resume = None;
        }
        self.unsaved_tokens.remove(&account);
        self.submit_store(
            StoreRequest::DeleteResumeToken {
                account_id: account,
            },
            Pending::TokenSync {
                account,
                token: None,
            },
        );
        self.reply(conn, id, Msg::Ok);
    }

    pub(crate) fn handle_search(&mut self, conn: ConnId, id: u32, name: &str) {
        if self.require_login(conn, id).is_none() {
            return;
        }
        let account = self.accounts.by_name(name);
        let presence = match account {
            None => Where::NotFound,
            Some(a) => match self.presence.addr_of(a.id) {
                Some(addr) => Where::Online(addr),
                None => Where::Offline,
            },
        };
        // The name as registered: `/search ALICE` answers for `alice`.
        let reply = Msg::SearchResult {
            name: account.map_or_else(|| name.to_owned(), |a| a.name.to_string()),
            presence,
        };
        self.reply(conn, id, reply);
    }

    pub(crate) fn handle_list_online(&mut self, conn: ConnId, id: u32, after: &str, limit: u16) {
        if self.require_login(conn, id).is_none() {
            return;
        }
        let limit = if limit == 0 { DEFAULT_PAGE } else { limit };
        let limit = usize::from(limit.min(self.config.max_page));
        let (names, more) = self.presence.page(after, limit);
        self.reply(conn, id, Msg::OnlineList { names, more });
    }

    pub(crate) fn handle_rename(&mut self, conn: ConnId, id: u32, name: String) {
        let Some(account) = self.require_login(conn, id) else {
            return;
        };
        if !is_valid_name(&name) {
            return self.error(conn, id, status::INVALID_NAME);
        }
        if self
            .accounts
            .by_id(account)
            .is_some_and(|a| *a.name == *name)
        {
            return self.reply(conn, id, Msg::Ok);
        }
        // Taken by someone else; a change of case of one's own name is allowed.
        let own = self
            .accounts
            .by_name(&name)
            .is_some_and(|a| a.id == account);
        if self.accounts.is_taken(&name) && !own {
            return self.error(conn, id, status::NAME_TAKEN);
        }
        if !self.store_capacity_ok(conn, id) {
            return;
        }
        self.accounts.reserve(&name);
        self.submit_store(
            StoreRequest::RenameAccount {
                id: account,
                new_name: name.clone(),
            },
            Pending::Rename {
                conn,
                req: id,
                account,
                name,
            },
        );
    }

    // ----- completions -----

    pub(crate) fn handle_hash_done(&mut self, _now: Instant, done: HashDone) {
        let Some(pending) = self.take_pending_hash(&done) else {
            return;
        };
        match (pending, done.result) {
            (
                Pending::RegisterHash {
                    conn,
                    req,
                    name,
                    salt,
                    iterations,
                },
                HashResult::Derived(hash),
            ) => {
                if !self.store_capacity_ok(conn, req) {
                    self.accounts.release(&name);
                    return;
                }
                let created_ms = self.wall_ms(_now);
                self.submit_store(
                    StoreRequest::CreateAccount {
                        name: name.clone(),
                        salt,
                        iterations,
                        hash,
                        created_ms,
                    },
                    Pending::RegisterStore {
                        conn,
                        req,
                        name,
                        salt,
                        iterations,
                        hash,
                        created_ms,
                    },
                );
            }
            (
                Pending::LoginHash {
                    conn,
                    req,
                    name,
                    source,
                    account,
                    listen,
                },
                HashResult::Verified(ok),
            ) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth_in_flight = false;
                }
                match account.filter(|_| ok) {
                    Some(account) => {
                        self.backoff.succeed(&(name, source));
                        self.start_session(_now, conn, req, account, listen);
                    }
                    None => {
                        // Already counted when the attempt was made.
                        if let Some(source) = self.conns.get(&conn).map(|c| c.remote) {
                            self.event(Event::LoginFailed { name, source });
                        }
                        self.error(conn, req, status::BAD_CREDENTIALS);
                    }
                }
            }
            (
                Pending::RegisterHash {
                    conn, req, name, ..
                },
                _,
            ) => {
                self.accounts.release(&name);
                self.error(conn, req, status::INTERNAL);
            }
            (Pending::LoginHash { conn, req, .. }, _) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth_in_flight = false;
                }
                self.error(conn, req, status::INTERNAL);
            }
            _ => {}
        }
    }

    pub(crate) fn handle_store_done(&mut self, now: Instant, done: StoreDone) {
        let Some(pending) = self.take_pending_store(&done) else {
            return;
        };
        match &done.result {
            Err(StoreError::Failed(why)) => self.event(Event::StoreFailed(why.clone())),
            Err(StoreError::DiskFull) => self.event(Event::StoreFailed("disk full".into())),
            _ => {}
        }
        match pending {
            Pending::RegisterStore {
                conn,
                req,
                name,
                salt,
                iterations,
                hash,
                created_ms,
            } => {
                self.accounts.release(&name);
                match done.result {
                    Ok(StoreOk::Account(id)) => {
                        self.accounts.insert(&AccountRecord {
                            id,
                            name: name.clone(),
                            salt,
                            iterations,
                            hash,
                            created_ms,
                        });
                        self.event(Event::Registered { name });
                        self.reply(conn, req, Msg::Ok);
                        // A fresh pre-login window to log in with the new account.
                        if self.state(conn) == Some(ConnState::ExpectLogin) {
                            self.arm_idle(now, conn);
                        }
                    }
                    Err(StoreError::NameTaken) => self.error(conn, req, status::NAME_TAKEN),
                    other => self.store_failed(conn, req, &other),
                }
            }
            Pending::SessionToken {
                conn,
                req,
                account,
                listen,
                token,
                token_hash,
                expires_ms,
            } => {
                self.starting.remove(&account);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.auth_in_flight = false;
                }
                if done.result.is_err() {
                    // The login itself needs nothing new on disk: the session opens with the
                    // token kept in memory, and the token is written when the store can take it
                    // (a full disk must not lock existing users out). Until then a registry
                    // restart forgets it and the client logs in with its password again.
                    self.stats.unsaved_logins += 1;
                    self.unsaved_tokens.insert(account);
                    self.arm_token_retry(now);
                } else {
                    self.unsaved_tokens.remove(&account);
                }
                if let Some(a) = self.accounts.by_id_mut(account) {
                    a.resume = Some((token_hash, expires_ms));
                }
                self.open_session(now, conn, req, account, listen, token);
            }
            Pending::Rename {
                conn,
                req,
                account,
                name,
            } => {
                self.accounts.release(&name);
                match done.result {
                    Ok(_) => {
                        let old = self.accounts.name_of(account);
                        if let Some(new) = self.accounts.rename(account, &name) {
                            self.presence.rename(account, new);
                        }
                        self.reply(conn, req, Msg::Ok);
                        if let Some(old) = old {
                            let new = name.clone();
                            self.push_to_rooms_of(
                                account,
                                p2pchat_protocol::RoomEvent::Renamed { old, new },
                            );
                        }
                    }
                    Err(StoreError::NameTaken) => self.error(conn, req, status::NAME_TAKEN),
                    other => self.store_failed(conn, req, &other),
                }
            }
            room @ (Pending::CreateRoom { .. }
            | Pending::Join { .. }
            | Pending::Remove { .. }
            | Pending::Promote { .. }) => self.handle_room_store_done(room, done),
            Pending::TokenSync { account, token } => {
                let current = self
                    .accounts
                    .by_id(account)
                    .and_then(|a| a.resume.map(|(hash, _)| hash));
                // Written and still what memory holds: the disk agrees. Otherwise (a failure,
                // or a newer token or a logout since) write memory's state again later.
                if done.result.is_ok() && current == token {
                    self.token_retry = TOKEN_RETRY_FIRST;
                } else {
                    if done.result.is_err() {
                        self.token_retry = (self.token_retry * 2).min(TOKEN_RETRY_MAX);
                    }
                    self.unsaved_tokens.insert(account);
                    self.arm_token_retry(now);
                }
            }
            Pending::RegisterHash { .. } | Pending::LoginHash { .. } => {}
        }
    }

    /// Writes memory's resume token (or its absence) for every account whose store write
    /// failed. Accounts with a login in flight are left for the next round: that login writes
    /// a newer token itself, and writing in between could reorder the two.
    pub(crate) fn retry_tokens(&mut self, now: Instant) {
        let mut accounts: Vec<AccountId> = self.unsaved_tokens.iter().copied().collect();
        accounts.sort_unstable();
        for account in accounts {
            if self.starting.contains(&account) {
                continue;
            }
            if self.stores_in_flight >= self.config.max_pending_stores {
                break;
            }
            self.unsaved_tokens.remove(&account);
            let resume = self.accounts.by_id(account).and_then(|a| a.resume);
            let request = match resume {
                Some((token_hash, expires_ms)) => StoreRequest::SetResumeToken {
                    account_id: account,
                    token_hash,
                    expires_ms,
                },
                None => StoreRequest::DeleteResumeToken {
                    account_id: account,
                },
            };
            let token = resume.map(|(hash, _)| hash);
            self.submit_store(request, Pending::TokenSync { account, token });
        }
        if !self.unsaved_tokens.is_empty() {
            self.arm_token_retry(now);
        }
    }
}
