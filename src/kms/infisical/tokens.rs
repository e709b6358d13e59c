//! Access tokens of universal-auth logins: random, kept only as their
//! SHA-256 in memory, each with the identity (credential id) it stands for
//! and an expiry. Time comes in as `now` (unix seconds).
//!
//! Bounded: one identity keeps at most [`MAX_PER_IDENTITY`] live tokens (a
//! new login evicts that identity's oldest, hurting nobody else); when the
//! whole table is full of live tokens a login is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Live tokens one identity may hold.
pub const MAX_PER_IDENTITY: usize = 100;
/// Live tokens in all.
pub const MAX_TOKENS: usize = 100_000;

#[derive(Debug, Clone)]
struct Entry {
    identity: String,
    issued: u64,
    expires: u64,
    seq: u64,
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid: the identity it stands for.
    Valid(String),
    /// It was issued here and has expired.
    Expired,
    /// Never issued here (or evicted).
    Unknown,
}

/// The table is full of live tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// The token table.
#[derive(Debug)]
pub struct TokenTable {
    entries: Mutex<(HashMap<[u8; 32], Entry>, u64)>,
    max_tokens: usize,
}

impl Default for TokenTable {
    fn default() -> Self {
        Self::new(MAX_TOKENS)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenTable {
    /// An empty table holding at most `max_tokens` live tokens.
    pub fn new(max_tokens: usize) -> Self {
        Self {
            entries: Mutex::new((HashMap::new(), 0)),
            max_tokens: max_tokens.max(1),
        }
    }

    /// Issues a token for `identity`, valid for `ttl` seconds from `now`.
    pub fn issue(&self, identity: &str, now: u64, ttl: u64) -> Result<String, TableFull> {
        let mut raw = [0u8; 32];
        OsRng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, seq) = &mut *guard;
        let mine: Vec<([u8; 32], u64)> = map
            .iter()
            .filter(|(_, e)| e.identity == identity && e.expires > now)
            .map(|(k, e)| (*k, e.seq))
            .collect();
        if mine.len() >= MAX_PER_IDENTITY {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, s)| *s) {
                map.remove(oldest);
            }
        }
        if map.len() >= self.max_tokens {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.max_tokens {
                return Err(TableFull);
            }
        }
        *seq += 1;
        map.insert(
            digest(&token),
            Entry {
                identity: identity.to_string(),
                issued: now,
                expires: now.saturating_add(ttl),
                seq: *seq,
            },
        );
        Ok(token)
    }

    /// Looks a presented token up at `now`; an expired one is dropped.
    pub fn check(&self, token: &str, now: u64) -> TokenCheck {
        let key = digest(token);
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = &mut guard.0;
        match map.get(&key) {
            None => TokenCheck::Unknown,
            Some(e) if e.expires <= now => {
                map.remove(&key);
                TokenCheck::Expired
            }
            Some(e) => TokenCheck::Valid(e.identity.clone()),
        }
    }

    /// When a live token was issued (unix seconds).
    pub fn issued_at(&self, token: &str) -> Option<u64> {
        let guard = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.0.get(&digest(token)).map(|e| e.issued)
    }

    /// Number of tokens held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .len()
    }

    /// True when no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_until_it_expires() {
        let t = TokenTable::default();
        let tok = t.issue("AKIDa", 1000, 60).unwrap();
        assert_eq!(tok.len(), 64);
        assert_eq!(t.check(&tok, 1000), TokenCheck::Valid("AKIDa".into()));
        assert_eq!(t.check(&tok, 1059), TokenCheck::Valid("AKIDa".into()));
        assert_eq!(t.check(&tok, 1060), TokenCheck::Expired);
        assert_eq!(
            t.check(&tok, 1061),
            TokenCheck::Unknown,
            "dropped once seen expired"
        );
        assert_eq!(t.check("nope", 1000), TokenCheck::Unknown);
    }

    #[test]
    fn tokens_are_not_stored_in_clear() {
        let t = TokenTable::default();
        let tok = t.issue("AKIDa", 0, 60).unwrap();
        let dump = format!("{t:?}");
        assert!(!dump.contains(&tok));
    }

    #[test]
    fn one_identity_cannot_crowd_out_others() {
        let t = TokenTable::new(150);
        let other = t.issue("B", 0, 100).unwrap();
        let first = t.issue("A", 0, 100).unwrap();
        for _ in 0..(MAX_PER_IDENTITY + 20) {
            t.issue("A", 0, 100).unwrap();
        }
        assert_eq!(
            t.check(&first, 1),
            TokenCheck::Unknown,
            "A's oldest evicted"
        );
        assert_eq!(t.check(&other, 1), TokenCheck::Valid("B".into()));
        assert_eq!(t.len(), MAX_PER_IDENTITY + 1);
    }

    #[test]
    fn a_full_table_refuses_until_tokens_expire() {
        let t = TokenTable::new(2);
        t.issue("A", 0, 10).unwrap();
        t.issue("B", 0, 10).unwrap();
        assert_eq!(t.issue("C", 5, 10), Err(TableFull));
        assert!(t.issue("C", 10, 10).is_ok(), "expired ones are pruned");
    }
}
