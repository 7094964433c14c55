//! [`SqliteStore`]: the schema, its migrations, the snapshot loader and the batch writer.

use std::path::Path;
use std::time::Duration;

use rusqlite::{ffi, params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    AccountRecord, MemberRecord, ResumeRecord, Role, RoomRecord, Snapshot, StoreDone, StoreError,
    StoreJob, StoreOk, StoreRequest,
};

/// How long a statement waits for a lock held by another connection (a backup tool, the
/// `sqlite3` shell) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; `PRAGMA user_version` counts how many have been applied. Append only:
/// never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema. STRICT tables reject values of the wrong type; the CHECKs pin the
    // blob sizes so a corrupt row fails the snapshot load instead of confusing the core.
    // AUTOINCREMENT keeps ids from ever being reused, so a stale id can never name a newer row.
    "CREATE TABLE accounts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT    NOT NULL UNIQUE,
        salt        BLOB    NOT NULL CHECK (length(salt) = 16),
        iterations  INTEGER NOT NULL CHECK (iterations BETWEEN 0 AND 4294967295),
        hash        BLOB    NOT NULL CHECK (length(hash) = 32),
        created_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE resume_tokens (
        account_id  INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
        token_hash  BLOB    NOT NULL CHECK (length(token_hash) = 32),
        expires_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE rooms (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT    NOT NULL UNIQUE,
        created_ms  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE room_members (
        room_id     INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        role        INTEGER NOT NULL CHECK (role IN (0, 1)),
        joined_seq  INTEGER NOT NULL,
        PRIMARY KEY (room_id, account_id)
    ) STRICT;
    -- Foreign-key cascades from accounts look members up by account.
    CREATE INDEX room_members_by_account ON room_members (account_id);
    -- Counters that must never go backwards, even when the row holding the maximum is deleted.
    CREATE TABLE counters (
        name        TEXT    PRIMARY KEY,
        value       INTEGER NOT NULL
    ) STRICT;
    INSERT INTO counters (name, value) VALUES ('joined_seq', 0);",
];

/// The registry's SQLite database. Owned by one thread (the store thread in production).
///
/// Opening it configures durability (`journal_mode=WAL`, `synchronous=FULL`), turns foreign keys
/// on, applies pending migrations and loads a [`Snapshot`]. [`SqliteStore::apply`] then writes
/// batches of jobs in one transaction each.
pub struct SqliteStore {
    conn: Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it to the current schema
    /// and loads everything in it.
    pub fn open(path: &Path) -> Result<(SqliteStore, Snapshot), StoreError> {
        let conn = Connection::open(path)
            .map_err(|e| failed(format!("cannot open {}", path.display()), e))?;
        let mut store = SqliteStore { conn };
        store.configure()?;
        store.migrate()?;
        let snapshot = store.read_snapshot()?;
        log::info!(
            "store: opened {} ({} accounts, {} rooms, {} memberships)",
            path.display(),
            snapshot.accounts.len(),
            snapshot.rooms.len(),
            snapshot.members.len()
        );
        Ok((store, snapshot))
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        let conn = &self.conn;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| failed("busy_timeout", e))?;
        // journal_mode answers with the mode now in force; WAL can be refused (some network
        // file systems, in-memory databases). synchronous=FULL keeps commits durable either
        // way, so a refusal is worth a warning, not a failure.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| failed("journal_mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("store: journal_mode is {mode}, not wal; commits will be slower");
        }
        // FULL, not WAL's usual NORMAL: NORMAL may lose the last commits on power loss, and a
        // reply to the client promises the write is durable.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| failed("synchronous", e))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| failed("foreign_keys", e))?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| failed("user_version", e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Failed(format!(
                "database schema version {version} is newer than this build supports ({known})"
            )));
        }
        if version < 0 {
            return Err(StoreError::Failed(format!(
                "database has an invalid schema version {version}"
            )));
        }
        // user_version lives in the database header, so setting it inside the transaction
        // makes each migration and its version bump atomic.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| failed("begin migration", e))?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let target = index as i64 + 1;
            tx.execute_batch(sql)
                .map_err(|e| failed(format!("migration to version {target}"), e))?;
            tx.pragma_update(None, "user_version", target)
                .map_err(|e| failed("set user_version", e))?;
            log::info!("store: migrated schema to version {target}");
        }
        tx.commit().map_err(|e| failed("commit migration", e))
    }

    /// Empties every table, keeping the schema: the database is then as [`SqliteStore::open`]
    /// leaves a new one (ids and the join counter start again). For the fuzz targets, which
    /// need a fresh store per input: creating the schema costs milliseconds, clearing it
    /// microseconds.
    #[doc(hidden)]
    pub fn clear(&mut self) -> Result<(), StoreError> {
        // Cached statements: parsing SQL is most of the cost of a clear.
        const CLEAR: [&str; 6] = [
            "DELETE FROM room_members",
            "DELETE FROM rooms",
            "DELETE FROM resume_tokens",
            "DELETE FROM accounts",
            "DELETE FROM sqlite_sequence",
            "UPDATE counters SET value = 0 WHERE name = 'joined_seq'",
        ];
        let tx = self
            .conn
            .transaction()
            .map_err(|e| failed("begin clear", e))?;
        for sql in CLEAR {
            tx.prepare_cached(sql)
                .and_then(|mut statement| statement.execute([]))
                .map_err(|e| failed("clear", e))?;
        }
        tx.commit().map_err(|e| failed("commit clear", e))
    }

    /// Reads everything durable. The core calls it once, through [`SqliteStore::open`]; tests
    /// call it to check what a batch really committed.
    pub fn read_snapshot(&self) -> Result<Snapshot, StoreError> {
        read_snapshot(&self.conn).map_err(|e| failed("load snapshot", e))
    }

    /// Applies `jobs` in one transaction and returns one [`StoreDone`] per job, in order.
    ///
    /// Each job runs inside its own savepoint, so a job that fails (a taken name, a missing
    /// row) is undone alone and its neighbours still commit. If the transaction cannot begin,
    /// a savepoint cannot be released, or the COMMIT fails, nothing is written and every job
    /// gets [`StoreError::Failed`]. Returns only after the commit is durable.
    pub fn apply(&mut self, jobs: Vec<StoreJob>) -> Vec<StoreDone> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let ids: Vec<u64> = jobs.iter().map(|job| job.id).collect();
        match apply_batch(&mut self.conn, jobs) {
            Ok(done) => done,
            Err(e) => {
                let error = if is_disk_full(&e) {
                    StoreError::DiskFull
                } else {
                    StoreError::Failed(format!("batch not committed: {e}"))
                };
                log::error!("store: {error} ({} jobs failed)", ids.len());
                ids.into_iter()
                    .map(|id| StoreDone {
                        id,
                        result: Err(error.clone()),
                    })
                    .collect()
            }
        }
    }
}

fn failed(context: impl std::fmt::Display, e: rusqlite::Error) -> StoreError {
    if is_disk_full(&e) {
        return StoreError::DiskFull;
    }
    StoreError::Failed(format!("{context}: {e}"))
}

/// `SQLITE_FULL`: the file system (or the database's size limit) has no room for the write.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

fn apply_batch(conn: &mut Connection, jobs: Vec<StoreJob>) -> rusqlite::Result<Vec<StoreDone>> {
    // IMMEDIATE takes the write lock up front, so a conflict with another connection shows
    // up here (after busy_timeout) rather than as a failed upgrade halfway through the batch.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        let savepoint = tx.savepoint()?;
        let result = execute(&savepoint, job.request);
        match result {
            Ok(_) => savepoint.commit()?,
            // The default drop behaviour is rollback; finish() does it and reports errors
            // (a savepoint that cannot be rolled back leaves the transaction in doubt, so the
            // whole batch fails).
            Err(_) => savepoint.finish()?,
        }
        done.push(StoreDone { id: job.id, result });
    }
    tx.commit()?;
    Ok(done)
}

/// Runs one request against the open transaction.
fn execute(conn: &Connection, request: StoreRequest) -> Result<StoreOk, StoreError> {
    match request {
        StoreRequest::CreateAccount {
            name,
            salt,
            iterations,
            hash,
            created_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO accounts (name, salt, iterations, hash, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| stmt.execute(params![name, salt, iterations, hash, created_ms]))
            .map_err(|e| name_conflict("create account", e))?;
            Ok(StoreOk::Account(conn.last_insert_rowid()))
        }
        StoreRequest::RenameAccount { id, new_name } => {
            let changed = conn
                .prepare_cached("UPDATE accounts SET name = ?2 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(params![id, new_name]))
                .map_err(|e| name_conflict("rename account", e))?;
            if changed == 0 {
                return Err(StoreError::Failed(format!("no account with id {id}")));
            }
            Ok(StoreOk::Done)
        }
        StoreRequest::SetResumeToken {
            account_id,
            token_hash,
            expires_ms,
        } => {
            conn.prepare_cached(
                "INSERT INTO resume_tokens (account_id, token_hash, expires_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id) DO UPDATE
                 SET token_hash = excluded.token_hash, expires_ms = excluded.expires_ms",
            )
            .and_then(|mut stmt| stmt.execute(params![account_id, token_hash, expires_ms]))
            .map_err(|e| failed("set resume token", e))?;
            Ok(StoreOk::Done)
        }
        StoreRequest::DeleteResumeToken { account_id } => {
            conn.prepare_cached("DELETE FROM resume_tokens WHERE account_id = ?1")
                .and_then(|mut stmt| stmt.execute(params![account_id]))
                .map_err(|e| failed("delete resume token", e))?;
            Ok(StoreOk::Done)
        }
        StoreRequest::CreateRoom {
            name,
            creator,
            created_ms,
        } => {
            conn.prepare_cached("INSERT INTO rooms (name, created_ms) VALUES (?1, ?2)")
                .and_then(|mut stmt| stmt.execute(params![name, created_ms]))
                .map_err(|e| name_conflict("create room", e))?;
            let id = conn.last_insert_rowid();
            let joined_seq = insert_member(conn, id, creator, Role::Admin)
                .map_err(|e| failed("add room creator", e))?;
            Ok(StoreOk::Room { id, joined_seq })
        }
        StoreRequest::AddMember {
            room_id,
            account_id,
            role,
        } => {
            let existing: Option<i64> = conn
                .prepare_cached(
                    "SELECT joined_seq FROM room_members WHERE room_id = ?1 AND account_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![room_id, account_id], |row| row.get(0))
                        .optional()
                })
                .map_err(|e| failed("look up member", e))?;
            let joined_seq = match existing {
                Some(seq) => seq,
                None => insert_member(conn, room_id, account_id, role)
                    .map_err(|e| failed("add member", e))?,
            };
            Ok(StoreOk::Member { joined_seq })
        }
        StoreRequest::RemoveMember {
            room_id,
            account_id,
        } => {
            conn.prepare_cached("DELETE FROM room_members WHERE room_id = ?1 AND account_id = ?2")
                .and_then(|mut stmt| stmt.execute(params![room_id, account_id]))
                .map_err(|e| failed("remove member", e))?;
            Ok(StoreOk::Done)
        }
        StoreRequest::SetRole {
            room_id,
            account_id,
            role,
        } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE room_members SET role = ?3 WHERE room_id = ?1 AND account_id = ?2",
                )
                .and_then(|mut stmt| stmt.execute(params![room_id, account_id, role.to_db()]))
                .map_err(|e| failed("set role", e))?;
            if changed == 0 {
                return Err(StoreError::Failed(format!(
                    "account {account_id} is not a member of room {room_id}"
                )));
            }
            Ok(StoreOk::Done)
        }
    }
}

/// Takes the next join sequence number and inserts the membership with it.
fn insert_member(
    conn: &Connection,
    room_id: i64,
    account_id: i64,
    role: Role,
) -> rusqlite::Result<i64> {
    let joined_seq: i64 = conn
        .prepare_cached(
            "UPDATE counters SET value = value + 1 WHERE name = 'joined_seq' RETURNING value",
        )?
        .query_row([], |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO room_members (room_id, account_id, role, joined_seq)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![room_id, account_id, role.to_db(), joined_seq])?;
    Ok(joined_seq)
}

/// Maps a UNIQUE violation on a name column to [`StoreError::NameTaken`]. Only the name
/// columns carry UNIQUE constraints (ids are primary keys, which report a different code).
fn name_conflict(context: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error() {
        Some(err) if err.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE => StoreError::NameTaken,
        _ => failed(context, e),
    }
}

fn read_snapshot(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let accounts = conn
        .prepare("SELECT id, name, salt, iterations, hash, created_ms FROM accounts ORDER BY id")?
        .query_map([], |row| {
            Ok(AccountRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                salt: row.get(2)?,
                iterations: row.get(3)?,
                hash: row.get(4)?,
                created_ms: row.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let resume_tokens = conn
        .prepare(
            "SELECT account_id, token_hash, expires_ms FROM resume_tokens ORDER BY account_id",
        )?
        .query_map([], |row| {
            Ok(ResumeRecord {
                account_id: row.get(0)?,
                token_hash: row.get(1)?,
                expires_ms: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let rooms = conn
        .prepare("SELECT id, name, created_ms FROM rooms ORDER BY id")?
        .query_map([], |row| {
            Ok(RoomRecord {
                id: row.get(0)?,
                name: row.get(1)?,
                created_ms: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let members = conn
        .prepare(
            "SELECT room_id, account_id, role, joined_seq FROM room_members
             ORDER BY room_id, joined_seq",
        )?
        .query_map([], |row| {
            let raw: i64 = row.get(2)?;
            let role = Role::from_db(raw)
                .ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(2, raw))?;
            Ok(MemberRecord {
                room_id: row.get(0)?,
                account_id: row.get(1)?,
                role,
                joined_seq: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Snapshot {
        accounts,
        resume_tokens,
        rooms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountId;
    use tempfile::TempDir;

    fn open(dir: &TempDir) -> (SqliteStore, Snapshot) {
        SqliteStore::open(&dir.path().join("registry.db")).expect("open store")
    }

    fn job(id: u64, request: StoreRequest) -> StoreJob {
        StoreJob { id, request }
    }

    fn create_account(name: &str) -> StoreRequest {
        StoreRequest::CreateAccount {
            name: name.into(),
            salt: [name.len() as u8; 16],
            iterations: 1000,
            hash: [0x5A; 32],
            created_ms: 1_700_000_000_000,
        }
    }

    /// Applies one request alone and returns its result.
    fn apply_one(store: &mut SqliteStore, request: StoreRequest) -> Result<StoreOk, StoreError> {
        let mut done = store.apply(vec![job(0, request)]);
        assert_eq!(done.len(), 1);
        done.remove(0).result
    }

    fn account_id(store: &mut SqliteStore, name: &str) -> AccountId {
        match apply_one(store, create_account(name)) {
            Ok(StoreOk::Account(id)) => id,
            other => panic!("create {name}: {other:?}"),
        }
    }

    #[test]
    fn open_creates_the_schema_and_an_empty_snapshot() {
        let dir = TempDir::new().unwrap();
        let (store, snapshot) = open(&dir);
        assert_eq!(snapshot, Snapshot::default());
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(store);
        // Reopening an up-to-date database migrates nothing and still loads.
        let (_store, snapshot) = open(&dir);
        assert_eq!(snapshot, Snapshot::default());
    }

    #[test]
    fn durability_pragmas_are_in_force() {
        let dir = TempDir::new().unwrap();
        let (store, _) = open(&dir);
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 is FULL.
        let synchronous: i64 = store
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2);
        let foreign_keys: i64 = store
            .conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .unwrap();
        assert_eq!(foreign_keys, 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("registry.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        match SqliteStore::open(&path) {
            Err(StoreError::Failed(reason)) => assert!(reason.contains("99"), "{reason}"),
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn everything_survives_a_reopen() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let alice = account_id(&mut store, "alice");
        let bob = account_id(&mut store, "bob");
        let carol = account_id(&mut store, "carol");
        assert!(alice < bob && bob < carol);

        let token = StoreRequest::SetResumeToken {
            account_id: bob,
            token_hash: [7; 32],
            expires_ms: 99,
        };
        assert_eq!(apply_one(&mut store, token), Ok(StoreOk::Done));
        // Upsert: the second token replaces the first.
        let token = StoreRequest::SetResumeToken {
            account_id: bob,
            token_hash: [8; 32],
            expires_ms: 100,
        };
        assert_eq!(apply_one(&mut store, token), Ok(StoreOk::Done));

        let room = StoreRequest::CreateRoom {
            name: "lobby".into(),
            creator: bob,
            created_ms: 5,
        };
        let (room_id, creator_seq) = match apply_one(&mut store, room) {
            Ok(StoreOk::Room { id, joined_seq }) => (id, joined_seq),
            other => panic!("create room: {other:?}"),
        };
        let add = |account_id, role| StoreRequest::AddMember {
            room_id,
            account_id,
            role,
        };
        let carol_seq = match apply_one(&mut store, add(carol, Role::Member)) {
            Ok(StoreOk::Member { joined_seq }) => joined_seq,
            other => panic!("add carol: {other:?}"),
        };
        let alice_seq = match apply_one(&mut store, add(alice, Role::Member)) {
            Ok(StoreOk::Member { joined_seq }) => joined_seq,
            other => panic!("add alice: {other:?}"),
        };
        assert!(creator_seq < carol_seq && carol_seq < alice_seq);
        // Adding again is idempotent: same seq, role unchanged.
        assert_eq!(
            apply_one(&mut store, add(carol, Role::Admin)),
            Ok(StoreOk::Member {
                joined_seq: carol_seq
            })
        );
        let promote = StoreRequest::SetRole {
            room_id,
            account_id: alice,
            role: Role::Admin,
        };
        assert_eq!(apply_one(&mut store, promote), Ok(StoreOk::Done));
        let rename = StoreRequest::RenameAccount {
            id: carol,
            new_name: "Carol".into(),
        };
        assert_eq!(apply_one(&mut store, rename), Ok(StoreOk::Done));
        let before = store.read_snapshot().unwrap();
        drop(store);

        let (_store, after) = open(&dir);
        assert_eq!(after, before);
        let names: Vec<_> = after.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "Carol"]);
        assert_eq!(after.accounts[0].salt, [5; 16]);
        assert_eq!(after.accounts[0].iterations, 1000);
        assert_eq!(after.accounts[0].hash, [0x5A; 32]);
        assert_eq!(after.accounts[0].created_ms, 1_700_000_000_000);
        assert_eq!(
            after.resume_tokens,
            [ResumeRecord {
                account_id: bob,
                token_hash: [8; 32],
                expires_ms: 100
            }]
        );
        assert_eq!(
            after.rooms,
            [RoomRecord {
                id: room_id,
                name: "lobby".into(),
                created_ms: 5
            }]
        );
        let members: Vec<_> = after
            .members
            .iter()
            .map(|m| (m.room_id, m.account_id, m.role, m.joined_seq))
            .collect();
        assert_eq!(
            members,
            [
                (room_id, bob, Role::Admin, creator_seq),
                (room_id, carol, Role::Member, carol_seq),
                (room_id, alice, Role::Admin, alice_seq),
            ]
        );
    }

    #[test]
    fn join_sequence_never_goes_backwards() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let alice = account_id(&mut store, "alice");
        let bob = account_id(&mut store, "bob");
        let room = StoreRequest::CreateRoom {
            name: "r".into(),
            creator: alice,
            created_ms: 0,
        };
        let Ok(StoreOk::Room { id, joined_seq }) = apply_one(&mut store, room) else {
            panic!("create room");
        };
        let add = StoreRequest::AddMember {
            room_id: id,
            account_id: bob,
            role: Role::Member,
        };
        let Ok(StoreOk::Member { joined_seq: first }) = apply_one(&mut store, add.clone()) else {
            panic!("add bob");
        };
        let remove = StoreRequest::RemoveMember {
            room_id: id,
            account_id: bob,
        };
        assert_eq!(apply_one(&mut store, remove.clone()), Ok(StoreOk::Done));
        // Removing twice is harmless.
        assert_eq!(apply_one(&mut store, remove), Ok(StoreOk::Done));
        drop(store);
        let (mut store, _) = open(&dir);
        let Ok(StoreOk::Member { joined_seq: second }) = apply_one(&mut store, add) else {
            panic!("re-add bob");
        };
        assert!(joined_seq < first && first < second);
    }

    #[test]
    fn duplicate_names_are_taken_and_names_are_case_sensitive() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let alice = account_id(&mut store, "alice");
        assert_eq!(
            apply_one(&mut store, create_account("alice")),
            Err(StoreError::NameTaken)
        );
        assert!(matches!(
            apply_one(&mut store, create_account("Alice")),
            Ok(StoreOk::Account(_))
        ));
        let room = |name: &str| StoreRequest::CreateRoom {
            name: name.into(),
            creator: alice,
            created_ms: 0,
        };
        assert!(matches!(
            apply_one(&mut store, room("lobby")),
            Ok(StoreOk::Room { .. })
        ));
        assert_eq!(
            apply_one(&mut store, room("lobby")),
            Err(StoreError::NameTaken)
        );
        let snapshot = store.read_snapshot().unwrap();
        assert_eq!(snapshot.accounts.len(), 2);
        assert_eq!(snapshot.rooms.len(), 1);
        // The failed room left no orphan membership behind.
        assert_eq!(snapshot.members.len(), 1);
    }

    #[test]
    fn rename_to_a_taken_name_fails_and_changes_nothing() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let alice = account_id(&mut store, "alice");
        account_id(&mut store, "bob");
        let rename = |new_name: &str| StoreRequest::RenameAccount {
            id: alice,
            new_name: new_name.into(),
        };
        assert_eq!(
            apply_one(&mut store, rename("bob")),
            Err(StoreError::NameTaken)
        );
        // Renaming to one's own name is a no-op, not a conflict.
        assert_eq!(apply_one(&mut store, rename("alice")), Ok(StoreOk::Done));
        let missing = StoreRequest::RenameAccount {
            id: 999,
            new_name: "zed".into(),
        };
        assert!(matches!(
            apply_one(&mut store, missing),
            Err(StoreError::Failed(_))
        ));
        let names: Vec<_> = store
            .read_snapshot()
            .unwrap()
            .accounts
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
    }

    #[test]
    fn one_failing_job_does_not_fail_its_batch() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let done = store.apply(vec![
            job(1, create_account("alice")),
            job(2, create_account("bob")),
            job(3, create_account("alice")),
            // A foreign-key failure is contained the same way.
            job(
                4,
                StoreRequest::SetResumeToken {
                    account_id: 12345,
                    token_hash: [0; 32],
                    expires_ms: 0,
                },
            ),
            job(
                5,
                StoreRequest::SetRole {
                    room_id: 1,
                    account_id: 1,
                    role: Role::Admin,
                },
            ),
            job(6, create_account("carol")),
        ]);
        let ids: Vec<u64> = done.iter().map(|d| d.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        assert!(matches!(done[0].result, Ok(StoreOk::Account(_))));
        assert!(matches!(done[1].result, Ok(StoreOk::Account(_))));
        assert_eq!(done[2].result, Err(StoreError::NameTaken));
        assert!(matches!(done[3].result, Err(StoreError::Failed(_))));
        assert!(matches!(done[4].result, Err(StoreError::Failed(_))));
        assert!(matches!(done[5].result, Ok(StoreOk::Account(_))));
        drop(store);
        let (_store, snapshot) = open(&dir);
        let names: Vec<_> = snapshot.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert!(snapshot.resume_tokens.is_empty());
    }

    #[test]
    fn a_batch_that_cannot_commit_fails_every_job_and_writes_nothing() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("registry.db");
        let (mut store, _) = SqliteStore::open(&path).unwrap();
        store.conn.busy_timeout(Duration::ZERO).unwrap();
        // Another connection holds the write lock, so the batch cannot begin.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let done = store.apply(vec![
            job(1, create_account("alice")),
            job(2, create_account("bob")),
        ]);
        assert_eq!(done.len(), 2);
        for d in &done {
            assert!(matches!(d.result, Err(StoreError::Failed(_))), "{d:?}");
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert!(store.read_snapshot().unwrap().accounts.is_empty());
        // The store recovers once the lock is gone.
        assert!(matches!(
            apply_one(&mut store, create_account("alice")),
            Ok(StoreOk::Account(_))
        ));
    }

    #[test]
    fn delete_token_and_unknown_creator() {
        let dir = TempDir::new().unwrap();
        let (mut store, _) = open(&dir);
        let alice = account_id(&mut store, "alice");
        let set = StoreRequest::SetResumeToken {
            account_id: alice,
            token_hash: [1; 32],
            expires_ms: 10,
        };
        assert_eq!(apply_one(&mut store, set), Ok(StoreOk::Done));
        let delete = StoreRequest::DeleteResumeToken { account_id: alice };
        assert_eq!(apply_one(&mut store, delete.clone()), Ok(StoreOk::Done));
        assert_eq!(apply_one(&mut store, delete), Ok(StoreOk::Done));
        let orphan = StoreRequest::CreateRoom {
            name: "orphan".into(),
            creator: 4242,
            created_ms: 0,
        };
        assert!(matches!(
            apply_one(&mut store, orphan),
            Err(StoreError::Failed(_))
        ));
        let snapshot = store.read_snapshot().unwrap();
        assert!(snapshot.resume_tokens.is_empty());
        // The room insert was rolled back with its creator's membership.
        assert!(snapshot.rooms.is_empty());
        assert!(store.apply(Vec::new()).is_empty());
    }
}
