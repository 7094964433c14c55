//! The in-memory account table: a write-through cache of the SQLite `accounts` and
//! `resume_tokens` tables, loaded at start. Reads never touch the store thread.

use std::collections::{HashMap, HashSet};

use crate::store::{AccountId, AccountRecord, Snapshot};

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) id: AccountId,
    pub(crate) name: String,
    pub(crate) salt: [u8; 16],
    pub(crate) iterations: u32,
    pub(crate) hash: [u8; 32],
    /// SHA-256 of the current resume token and its expiry (unix ms).
    pub(crate) resume: Option<([u8; 32], i64)>,
}

#[derive(Debug, Default)]
pub(crate) struct Accounts {
    by_id: HashMap<AccountId, Account>,
    by_name: HashMap<String, AccountId>,
    /// Names with a register or rename in flight: taken until the store answers.
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
        self.by_name.insert(r.name.clone(), r.id);
        self.by_id.insert(
            r.id,
            Account {
                id: r.id,
                name: r.name.clone(),
                salt: r.salt,
                iterations: r.iterations,
                hash: r.hash,
                resume: None,
            },
        );
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&Account> {
        self.by_id.get(self.by_name.get(name)?)
    }

    pub(crate) fn by_id(&self, id: AccountId) -> Option<&Account> {
        self.by_id.get(&id)
    }

    pub(crate) fn by_id_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        self.by_id.get_mut(&id)
    }

    /// Whether `name` is registered or being registered/renamed to.
    pub(crate) fn is_taken(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.reserved.contains(name)
    }

    pub(crate) fn reserve(&mut self, name: &str) {
        self.reserved.insert(name.to_owned());
    }

    pub(crate) fn release(&mut self, name: &str) {
        self.reserved.remove(name);
    }

    pub(crate) fn rename(&mut self, id: AccountId, new: &str) {
        if let Some(acc) = self.by_id.get_mut(&id) {
            self.by_name.remove(&acc.name);
            acc.name = new.to_owned();
            self.by_name.insert(new.to_owned(), id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}
