//! Durable storage for the registry: the SQLite schema, the batch writer and the store thread.
//!
//! The registry core is a write-through cache. At startup the binary calls
//! [`SqliteStore::open`], which creates or migrates the schema and returns a [`Snapshot`] of
//! every account, resume token, room and membership; the core loads it into memory and never
//! reads SQLite again. From then on the core only emits writes: a [`StoreJob`] (an id the core
//! chooses plus a [`StoreRequest`]) goes to the [`StoreHandle`], whose thread owns the
//! `rusqlite::Connection`, and the matching [`StoreDone`] comes back on a channel, followed by the
//! `notify` callback so the reactor wakes up and feeds it to the core as `Input::StoreDone`.
//!
//! Guarantees the core relies on:
//!
//! - A [`StoreDone`] with `Ok` is sent only after the write is durably committed
//!   (`journal_mode=WAL`, `synchronous=FULL`). Queued jobs are committed together, up to
//!   [`MAX_BATCH`] per transaction (group commit), so one fsync covers many clients.
//! - Each job runs in its own savepoint: a duplicate name ([`StoreError::NameTaken`]) or a
//!   missing row fails that job alone, never its neighbours in the batch. If the batch as a
//!   whole cannot commit, every job in it gets [`StoreError::Failed`] and nothing is written.
//! - Replies come back in submission order.
//! - The job queue is bounded: [`StoreHandle::submit`] hands the job back when it is full, so
//!   the core can answer "busy, try again" instead of growing without limit.
//!
//! This module reads no clock: every wall-clock time (`created_ms`, `expires_ms`) arrives as a
//! field in milliseconds since the Unix epoch.

use std::fmt;

mod handle;
mod sqlite;

pub use handle::StoreHandle;
pub use sqlite::SqliteStore;

/// Most jobs the store thread commits in one transaction.
pub const MAX_BATCH: usize = 256;

/// Row id of an account; stable across renames and never reused.
pub type AccountId = i64;
/// Row id of a room; never reused.
pub type RoomId = i64;

/// A member's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An ordinary member.
    Member,
    /// A room administrator.
    Admin,
}

impl Role {
    /// The integer stored in `room_members.role`.
    pub(crate) fn to_db(self) -> i64 {
        match self {
            Role::Member => 0,
            Role::Admin => 1,
        }
    }

    pub(crate) fn from_db(value: i64) -> Option<Role> {
        match value {
            0 => Some(Role::Member),
            1 => Some(Role::Admin),
            _ => None,
        }
    }
}

/// One registered account, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The account's row id.
    pub id: AccountId,
    /// The account name; unique across accounts.
    pub name: String,
    /// Random PBKDF2 salt for this account's password hash.
    pub salt: [u8; 16],
    /// PBKDF2 iteration count used for this account's hash, stored per account.
    pub iterations: u32,
    /// PBKDF2-HMAC-SHA256 hash of the password.
    pub hash: [u8; 32],
    /// When the account was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// The hash of an account's current resume token (at most one per account).
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    /// The account the token resumes.
    pub account_id: AccountId,
    /// SHA-256 hash of the resume token; the token itself is never stored.
    pub token_hash: [u8; 32],
    /// When the token expires, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
}

/// One chat room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    /// The room's row id.
    pub id: RoomId,
    /// The room name; unique across rooms.
    pub name: String,
    /// When the room was created, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// One membership of an account in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// The room.
    pub room_id: RoomId,
    /// The member's account.
    pub account_id: AccountId,
    /// The member's role in the room.
    pub role: Role,
    /// Join order across the whole database: strictly increasing, never reused. Admin
    /// succession picks the remaining member with the smallest value.
    pub joined_seq: i64,
}

/// Everything durable, loaded once at startup.
///
/// Rows are ordered: accounts, tokens and rooms by id; members by room, then `joined_seq`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every account, by id.
    pub accounts: Vec<AccountRecord>,
    /// Every stored resume token, by account id.
    pub resume_tokens: Vec<ResumeRecord>,
    /// Every room, by id.
    pub rooms: Vec<RoomRecord>,
    /// Every membership, by room, then `joined_seq`.
    pub members: Vec<MemberRecord>,
}

/// A write the core asks the store to make durable.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreRequest {
    /// Insert an account. Replies [`StoreOk::Account`] or [`StoreError::NameTaken`].
    CreateAccount {
        /// The account name; must not be taken.
        name: String,
        /// Random PBKDF2 salt for the password hash.
        salt: [u8; 16],
        /// PBKDF2 iteration count the hash was derived with.
        iterations: u32,
        /// PBKDF2-HMAC-SHA256 hash of the password.
        hash: [u8; 32],
        /// Creation time, in milliseconds since the Unix epoch.
        created_ms: i64,
    },
    /// Change an account's name. Replies [`StoreOk::Done`] or [`StoreError::NameTaken`];
    /// an unknown id is [`StoreError::Failed`]. Memberships follow (they reference the id).
    RenameAccount {
        /// The account to rename.
        id: AccountId,
        /// The new name; must not be taken.
        new_name: String,
    },
    /// Insert or replace the account's single resume token. Replies [`StoreOk::Done`].
    SetResumeToken {
        /// The account the token resumes.
        account_id: AccountId,
        /// SHA-256 hash of the new resume token.
        token_hash: [u8; 32],
        /// Expiry time, in milliseconds since the Unix epoch.
        expires_ms: i64,
    },
    /// Remove the account's resume token if any. Replies [`StoreOk::Done`].
    DeleteResumeToken {
        /// The account whose token is removed.
        account_id: AccountId,
    },
    /// Insert a room and its creator as [`Role::Admin`]. Replies [`StoreOk::Room`] or
    /// [`StoreError::NameTaken`].
    CreateRoom {
        /// The room name; must not be taken.
        name: String,
        /// The account that creates the room and becomes its first admin.
        creator: AccountId,
        /// Creation time, in milliseconds since the Unix epoch.
        created_ms: i64,
    },
    /// Add a member. Replies [`StoreOk::Member`]; an existing member keeps its role and
    /// `joined_seq`, which is returned.
    AddMember {
        /// The room to join.
        room_id: RoomId,
        /// The joining account.
        account_id: AccountId,
        /// The role a new member gets; ignored for an existing member.
        role: Role,
    },
    /// Remove a member if present. Replies [`StoreOk::Done`].
    RemoveMember {
        /// The room to leave.
        room_id: RoomId,
        /// The leaving account.
        account_id: AccountId,
    },
    /// Change a member's role. Replies [`StoreOk::Done`]; a non-member is
    /// [`StoreError::Failed`].
    SetRole {
        /// The room.
        room_id: RoomId,
        /// The member whose role changes.
        account_id: AccountId,
        /// The new role.
        role: Role,
    },
}

/// The successful answer to a [`StoreRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOk {
    /// The write was applied; there is nothing to return.
    Done,
    /// The account was created with this id.
    Account(AccountId),
    /// The room was created.
    Room {
        /// The new room's id.
        id: RoomId,
        /// The creator's admin membership `joined_seq`.
        joined_seq: i64,
    },
    /// The account is a member.
    Member {
        /// The membership's `joined_seq`: newly assigned, or the existing one.
        joined_seq: i64,
    },
}

/// Why a [`StoreRequest`] was not applied. Nothing of a failed request is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another account or room already has the name.
    #[error("name already taken")]
    NameTaken,
    /// The file system is full (`SQLITE_FULL`): nothing new can be written until space returns.
    #[error("disk full")]
    DiskFull,
    /// The write failed for any other reason (missing row, SQLite error); carries the reason.
    #[error("storage failure: {0}")]
    Failed(String),
}

/// A request tagged with the core's id for matching the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreJob {
    /// The core's id, echoed in the matching [`StoreDone`].
    pub id: u64,
    /// The write to make.
    pub request: StoreRequest,
}

/// The reply to the [`StoreJob`] with the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreDone {
    /// The id of the [`StoreJob`] this answers.
    pub id: u64,
    /// The outcome; `Ok` only once the write is durably committed.
    pub result: Result<StoreOk, StoreError>,
}

/// Prints the length of a secret-derived byte string instead of its bytes, so password hashes
/// and token hashes never reach a log line through `{:?}`.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0)
    }
}

impl fmt::Debug for AccountRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("salt", &Redacted(self.salt.len()))
            .field("iterations", &self.iterations)
            .field("hash", &Redacted(self.hash.len()))
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

impl fmt::Debug for ResumeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeRecord")
            .field("account_id", &self.account_id)
            .field("token_hash", &Redacted(self.token_hash.len()))
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

impl fmt::Debug for StoreRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreRequest::CreateAccount {
                name,
                salt,
                iterations,
                hash,
                created_ms,
            } => f
                .debug_struct("CreateAccount")
                .field("name", name)
                .field("salt", &Redacted(salt.len()))
                .field("iterations", iterations)
                .field("hash", &Redacted(hash.len()))
                .field("created_ms", created_ms)
                .finish(),
            StoreRequest::RenameAccount { id, new_name } => f
                .debug_struct("RenameAccount")
                .field("id", id)
                .field("new_name", new_name)
                .finish(),
            StoreRequest::SetResumeToken {
                account_id,
                token_hash,
                expires_ms,
            } => f
                .debug_struct("SetResumeToken")
                .field("account_id", account_id)
                .field("token_hash", &Redacted(token_hash.len()))
                .field("expires_ms", expires_ms)
                .finish(),
            StoreRequest::DeleteResumeToken { account_id } => f
                .debug_struct("DeleteResumeToken")
                .field("account_id", account_id)
                .finish(),
            StoreRequest::CreateRoom {
                name,
                creator,
                created_ms,
            } => f
                .debug_struct("CreateRoom")
                .field("name", name)
                .field("creator", creator)
                .field("created_ms", created_ms)
                .finish(),
            StoreRequest::AddMember {
                room_id,
                account_id,
                role,
            } => f
                .debug_struct("AddMember")
                .field("room_id", room_id)
                .field("account_id", account_id)
                .field("role", role)
                .finish(),
            StoreRequest::RemoveMember {
                room_id,
                account_id,
            } => f
                .debug_struct("RemoveMember")
                .field("room_id", room_id)
                .field("account_id", account_id)
                .finish(),
            StoreRequest::SetRole {
                room_id,
                account_id,
                role,
            } => f
                .debug_struct("SetRole")
                .field("room_id", room_id)
                .field("account_id", account_id)
                .field("role", role)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips_through_its_db_encoding() {
        for role in [Role::Member, Role::Admin] {
            assert_eq!(Role::from_db(role.to_db()), Some(role));
        }
        assert_eq!(Role::from_db(2), None);
    }

    #[test]
    fn debug_output_redacts_hashes() {
        let request = StoreRequest::CreateAccount {
            name: "alice".into(),
            salt: [0xAB; 16],
            iterations: 7,
            hash: [0xCD; 32],
            created_ms: 1,
        };
        let text = format!("{request:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(text.contains("redacted"), "{text}");
        assert!(!text.contains("171") && !text.contains("205"), "{text}");

        let token = ResumeRecord {
            account_id: 1,
            token_hash: [0xCD; 32],
            expires_ms: 2,
        };
        let text = format!("{token:?}");
        assert!(!text.contains("205"), "{text}");
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(StoreError::NameTaken.to_string(), "name already taken");
        assert_eq!(
            StoreError::Failed("disk full".into()).to_string(),
            "storage failure: disk full"
        );
    }
}
