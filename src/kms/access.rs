//! Who is calling, and may they use this key: the one access decision every
//! KMS face (Tencent, Alibaba OpenAPI, Infisical) asks.
//!
//! The three faces used to each write their own: one checked revocation in
//! its scoping and the others did not, and an unknown credential id got its
//! own early error (`AuthFailure.SecretIdNotFound`,
//! `InvalidAccessKeyId.NotFound`) — telling anyone who asks which ids exist.
//!
//! Here every presented id gets a secret to check the proof against: its own
//! when the credential exists and is not revoked, otherwise a random decoy
//! nobody knows, opened the same way ([`KeyStore::credential_for_check`]).
//! The dialect's verifier therefore always runs to its constant-time
//! comparison, and an unknown or revoked id fails exactly as a wrong secret
//! does, in that dialect's own auth-failure shape. Even if a proof somehow
//! matched the decoy, [`Access::authenticate`] refuses an id that was not
//! live when its secret was read.
//!
//! The Alibaba instance API authenticates registered client keys (RSA
//! public keys on disk), not these credentials; it is not decided here.

use std::cell::RefCell;
use std::sync::Arc;

use crate::keys::{KeyId, KeyStore};
use crate::kms::KeyNote;
use crate::secret::SecretBytes;

/// A credential that proved it holds its secret and is not revoked, for
/// the length of one request: it also notes the key that request asked to
/// use (for the request's [`KmsOutcome`](crate::kms::KmsOutcome)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: String,
    key: KeyNote,
}

impl Principal {
    fn new(id: String) -> Self {
        Self {
            id,
            key: KeyNote::default(),
        }
    }

    /// The credential id (the rate limiter's and the audit log's caller).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Notes a key this request made (CreateKey), unless one is noted.
    pub fn note_key(&self, id: KeyId) {
        self.key.note(id);
    }

    /// The first key this request asked to use, allowed or not.
    pub fn key(&self) -> Option<KeyId> {
        self.key.get()
    }
}

/// The access decision over a key store's credentials.
#[derive(Debug, Clone)]
pub struct Access {
    store: Arc<KeyStore>,
}

/// The secret lookup a dialect's verifier is handed: it answers for every
/// id (a decoy for an unknown or revoked one), so a verifier's own
/// "id not found" branch is never taken.
pub type SecretLookup<'a> = &'a dyn Fn(&str) -> Option<SecretBytes>;

impl Access {
    /// The decision over `store`'s credentials.
    pub fn new(store: Arc<KeyStore>) -> Self {
        Self { store }
    }

    /// Who is this: runs the dialect's `verify` with a secret lookup, then
    /// admits the id `id_of` names in its result only if it was live (exists,
    /// not revoked) when its secret was read. `refused` is the dialect's
    /// answer to a bad proof; it is also the answer to an unknown or revoked
    /// id, so the two cannot be told apart.
    pub fn authenticate<T, E>(
        &self,
        verify: impl FnOnce(SecretLookup<'_>) -> Result<T, E>,
        id_of: impl FnOnce(&T) -> &str,
        refused: impl FnOnce() -> E,
    ) -> Result<(Principal, T), E> {
        let looked_up: RefCell<Option<(String, bool)>> = RefCell::new(None);
        let lookup = |id: &str| {
            let (secret, live) = self.store.credential_for_check(id);
            *looked_up.borrow_mut() = Some((id.to_string(), live));
            Some(secret)
        };
        let verified = verify(&lookup)?;
        let id = id_of(&verified).to_string();
        let admitted = matches!(
            looked_up.borrow().as_ref(),
            Some((looked, true)) if *looked == id
        );
        if !admitted {
            return Err(refused());
        }
        Ok((Principal::new(id), verified))
    }

    /// Who is this, for a credential already authenticated once (an
    /// Infisical access token's identity): the principal while the
    /// credential is live, `None` once it is revoked or gone.
    pub fn principal(&self, id: &str) -> Option<Principal> {
        self.store
            .list_credentials()
            .iter()
            .any(|c| c.id == id && !c.revoked)
            .then(|| Principal::new(id.to_string()))
    }

    /// May `who` use `key` (KeyId or alias): the credential is still live and
    /// either unrestricted or limited to a list naming that key.
    /// The key is noted on `who` either way, when it names one.
    pub fn may_use(&self, who: &Principal, key: &str) -> bool {
        self.note(&who.key, key);
        self.store.allowed(&who.id, key)
    }

    /// Whether `who` may see `key` in a listing: [`Self::may_use`] without
    /// noting the key.
    pub fn may_list(&self, who: &Principal, key: &str) -> bool {
        self.store.allowed(&who.id, key)
    }

    /// Notes the key `key` (KeyId or alias) names, if it names one.
    pub fn note(&self, note: &KeyNote, key: &str) {
        if let Ok(id) = self.store.resolve(key) {
            note.note(id);
        }
    }

    /// Whether `who` may use every key (and so create keys and list them
    /// all): live and not limited to some keys.
    pub fn unrestricted(&self, who: &Principal) -> bool {
        self.store
            .list_credentials()
            .iter()
            .any(|c| c.id == who.id && !c.revoked && c.allowed_keys.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{CreateKeyRequest, RootKeySource, StoreOptions};

    fn store() -> (tempfile::TempDir, Arc<KeyStore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = KeyStore::open(dir.path(), RootKeySource::Auto, StoreOptions::default()).unwrap();
        (dir, Arc::new(s))
    }

    /// A verifier that compares the presented secret with the looked-up one.
    fn check<'a>(
        id: &'a str,
        presented: &'a [u8],
    ) -> impl FnOnce(SecretLookup<'_>) -> Result<&'a str, &'static str> + 'a {
        move |lookup| {
            let s = lookup(id).ok_or("not found")?;
            if s.expose() == presented {
                Ok(id)
            } else {
                Err("bad proof")
            }
        }
    }

    #[test]
    fn unknown_revoked_and_wrong_secret_get_the_same_answer() {
        let (_d, s) = store();
        let a = Access::new(s.clone());
        let c = s.create_credential(None).unwrap();
        let secret = c.secret.expose().to_vec();
        let ok = a.authenticate(check(&c.id, &secret), |id| *id, || "refused");
        assert_eq!(ok.unwrap().0.id(), c.id);
        let wrong = a.authenticate(check(&c.id, b"nope"), |id| *id, || "refused");
        let unknown = a.authenticate(check("AKIDnobody", &secret), |id| *id, || "refused");
        assert_eq!(wrong.unwrap_err(), "bad proof");
        assert_eq!(unknown.unwrap_err(), "bad proof", "no early not-found");
        s.revoke_credential(&c.id).unwrap();
        let revoked = a.authenticate(check(&c.id, &secret), |id| *id, || "refused");
        assert_eq!(revoked.unwrap_err(), "bad proof");
        assert!(a.principal(&c.id).is_none());
    }

    #[test]
    fn a_proof_for_a_dead_id_is_refused_even_if_it_verified() {
        let (_d, s) = store();
        let a = Access::new(s);
        // A verifier that accepts anything: the decision still refuses.
        let r = a.authenticate(
            |lookup| lookup("AKIDnobody").map(|_| "AKIDnobody").ok_or("x"),
            |id| *id,
            || "refused",
        );
        assert_eq!(r.unwrap_err(), "refused");
    }

    #[test]
    fn limited_credentials_reach_only_their_keys() {
        let (_d, s) = store();
        let a = Access::new(s.clone());
        let k1 = s
            .create(CreateKeyRequest::default())
            .unwrap()
            .key_id
            .to_string();
        let k2 = s
            .create(CreateKeyRequest::default())
            .unwrap()
            .key_id
            .to_string();
        let lim = s.create_credential(Some(vec![k1.clone()])).unwrap();
        let all = s.create_credential(None).unwrap();
        let (lim, all) = (a.principal(&lim.id).unwrap(), a.principal(&all.id).unwrap());
        assert!(a.may_use(&lim, &k1) && !a.may_use(&lim, &k2));
        assert!(a.may_use(&all, &k2));
        // each principal notes the first key it asked for, allowed or not
        assert_eq!(lim.key().map(|k| k.to_string()), Some(k1.clone()));
        assert_eq!(all.key().map(|k| k.to_string()), Some(k2.clone()));
        assert!(a.unrestricted(&all) && !a.unrestricted(&lim));
        s.revoke_credential(all.id()).unwrap();
        assert!(!a.may_use(&all, &k2) && !a.unrestricted(&all));
    }
}
