//! Who may use the console: the log-in token (made at start, printed once,
//! compared in constant time), sessions held in memory behind an HttpOnly,
//! SameSite=Strict cookie, and the per-session CSRF token every form posts.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "sealgate_console";
/// A session unused this long is gone.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most sessions held (logged in or not); past it the least recently used
/// is dropped, so anonymous visits cannot grow memory.
const MAX_SESSIONS: usize = 1024;

/// 32 random bytes, hex.
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Equal in constant time (over SHA-256 digests, so lengths do not show).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.ct_eq(&y).into()
}

/// One visitor's session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The CSRF token its forms carry.
    pub(crate) csrf: String,
    /// Logged in (with the token).
    pub(crate) authed: bool,
    last_seen: Instant,
}

/// The sessions of one console.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// The session with this cookie value, if it is live (and marks it used).
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let s = m.get_mut(id)?;
        if now.duration_since(s.last_seen) > IDLE {
            m.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// A new session (a fresh id and CSRF token); returns (id, session).
    pub(crate) fn create(&self, authed: bool) -> (String, Session) {
        let id = random_token();
        let s = Session {
            csrf: random_token(),
            authed,
            last_seen: Instant::now(),
        };
        let mut m = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        m.retain(|_, s| now.duration_since(s.last_seen) <= IDLE);
        while m.len() >= MAX_SESSIONS {
            let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| (s.authed, s.last_seen))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            m.remove(&oldest);
        }
        m.insert(id.clone(), s.clone());
        (id, s)
    }

    /// Ends a session.
    pub(crate) fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Set-Cookie` value for session `id` (`secure`: the listener is TLS).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session cookie.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn sessions_are_bounded_and_logged_in_ones_outlive_anonymous_ones() {
        let s = Sessions::default();
        let (kept, _) = s.create(true);
        for _ in 0..MAX_SESSIONS + 10 {
            s.create(false);
        }
        assert!(s.get(&kept).is_some_and(|x| x.authed));
        assert!(s.map.lock().unwrap().len() <= MAX_SESSIONS);
        s.remove(&kept);
        assert!(s.get(&kept).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(
            cookie("a=1; sealgate_console=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("a=1", COOKIE), None);
        assert!(set_cookie("x", true).contains("HttpOnly; SameSite=Strict; Secure"));
    }
}
