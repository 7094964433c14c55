//! The in-memory account table: a write-through cache of the SQLite `accounts` and
//! `resume_tokens` tables, loaded at start. Reads never touch the store thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::store::{AccountId, AccountRecord, Snapshot};

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) id: AccountId,
    /// Shared with the account's session while it is online (`presence.rs`): one allocation
    /// per name, not one more per online peer.
    pub(crate) name: Arc<str>,
    pub(crate) salt: [u8; 16],
    pub(crate) iterations: u32,
    pub(crate) hash: [u8; 32],
    /// SHA-256 of the current resume token and its expiry (unix ms).
    pub(crate) resume: Option<([u8; 32], i64)>,
}

/// Usernames are unique without regard to case: `ALICE` cannot be registered while `alice`
/// exists, and `/login ALICE` finds `alice`. The account keeps the case chosen at registration
/// (that is what replies and other users show). Names are ASCII (protocol rules), so ASCII
/// lower case is the key.
fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[derive(Debug, Default)]
pub(crate) struct Accounts {
    by_id: HashMap<AccountId, Account, crate::io::IdKeyed>,
    /// Keyed by [`key`] of the name.
    by_name: HashMap<String, AccountId>,
    /// Names with a register or rename in flight: taken until the store answers. By [`key`].
    reserved: HashSet<String>,
}

impl Accounts {
    pub(crate) fn load(snapshot: &Snapshot) -> Accounts {
        let mut a = Accounts::default();
        for r in &snapshot.accounts {
            a.insert(r);
        }
        for t in &snapshot.resume_tokens {
            if let Some(acc) = a.by_id.get_mut(&t.account_id) {
                acc.resume = Some((t.token_hash, t.expires_ms));
            }
        }
        a
    }

    pub(crate) fn insert(&mut self, r: &AccountRecord) {
        self.by_name.insert(key(&r.name), r.id);
        self.by_id.insert(
            r.id,
            Account {
                id: r.id,
                name: Arc::from(r.name.as_str()),
                salt: r.salt,
                iterations: r.iterations,
                hash: r.hash,
                resume: None,
            },
        );
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&Account> {
        self.by_id.get(self.by_name.get(&key(name))?)
    }

    pub(crate) fn by_id(&self, id: AccountId) -> Option<&Account> {
        self.by_id.get(&id)
    }

    /// The account's name as registered, owned (for a frame or an event).
    pub(crate) fn name_of(&self, id: AccountId) -> Option<String> {
        self.by_id(id).map(|a| a.name.to_string())
    }

    pub(crate) fn by_id_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        self.by_id.get_mut(&id)
    }

    /// Whether `name` is registered or being registered/renamed to.
    pub(crate) fn is_taken(&self, name: &str) -> bool {
        let k = key(name);
        self.by_name.contains_key(&k) || self.reserved.contains(&k)
    }

    pub(crate) fn reserve(&mut self, name: &str) {
        self.reserved.insert(key(name));
    }

    pub(crate) fn release(&mut self, name: &str) {
        self.reserved.remove(&key(name));
    }

    /// Renames the account; its new name, shared (the session takes it too).
    pub(crate) fn rename(&mut self, id: AccountId, new: &str) -> Option<Arc<str>> {
        let acc = self.by_id.get_mut(&id)?;
        self.by_name.remove(&key(&acc.name));
        acc.name = Arc::from(new);
        self.by_name.insert(key(new), id);
        Some(Arc::clone(&acc.name))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}
