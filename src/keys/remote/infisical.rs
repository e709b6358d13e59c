//! Infisical KMS as a remote provider: universal-auth login for a bearer
//! access token (renewed by logging in again before it expires, or at once
//! when the KMS refuses it), then `encrypt` / `decrypt` of data keys under a
//! KMS key, as the official `infisicalsdk` calls them.
//!
//! Infisical has no GenerateDataKey: the DEK is made here (OS RNG) and sent
//! to `POST /api/v1/kms/keys/{id}/encrypt`. Its decrypt needs the key id,
//! so the blob the envelope carries is `key id || 0x00 || ciphertext`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};

use super::{cmk_of, Action, Call, Credentials, Dialect, Failure};
use crate::config::ProviderSettings;
use crate::keys::provider::{KeyError, RemoteDataKey};
use crate::kms::alibaba::sign::percent_encode;
use crate::secret::{DataKey, SecretBytes};

/// A held access token and when to log in again.
struct Token {
    /// The bearer token (zeroized on drop).
    value: SecretBytes,
    /// Log in again from this moment (80 % of the token's lifetime).
    renew_at: Instant,
}

/// The Infisical dialect: endpoint, credential and the current token.
pub struct Infisical {
    /// `scheme://authority` requests go to.
    base: String,
    /// universal-auth clientId and clientSecret.
    creds: Credentials,
    /// The current access token, if any.
    token: Mutex<Option<Token>>,
}

impl Infisical {
    /// The dialect for the settings and credential.
    pub fn new(settings: &ProviderSettings, creds: Credentials) -> Result<Infisical, String> {
        let host = settings
            .endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("provider.endpoint has no host")?;
        let scheme = settings.endpoint.scheme_str().unwrap_or("https");
        Ok(Infisical {
            base: format!("{scheme}://{host}"),
            creds,
            token: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Token>> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// When to log in again for a token that lives `expires_in` seconds from `at`.
fn renew_at(at: Instant, expires_in: u64) -> Instant {
    at + Duration::from_secs(expires_in).mul_f64(0.8)
}

/// The blob the envelope carries: `key id || 0x00 || ciphertext`.
fn blob_of(key: &str, ciphertext: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1 + ciphertext.len());
    v.extend_from_slice(key.as_bytes());
    v.push(0);
    v.extend_from_slice(ciphertext.as_bytes());
    v
}

/// The key id and ciphertext of a blob, if it is one.
fn split_blob(blob: &[u8]) -> Option<(&str, &str)> {
    let at = blob.iter().position(|b| *b == 0)?;
    let key = std::str::from_utf8(&blob[..at]).ok()?;
    let ct = std::str::from_utf8(&blob[at + 1..]).ok()?;
    (!key.is_empty() && !ct.is_empty()).then_some((key, ct))
}

/// An HTTP status as a failure: throttling and server errors are retried.
fn failure_of(status: http::StatusCode) -> Failure {
    match status.as_u16() {
        429 => Failure::Throttled("answered HTTP 429".into()),
        500..=599 => Failure::Retry("server_error", format!("answered HTTP {}", status.as_u16())),
        404 => Failure::Final(KeyError::CmkNotFound),
        n => Failure::Final(KeyError::Unavailable(format!(
            "infisical KMS refused the call: HTTP {n}"
        ))),
    }
}

impl Dialect for Infisical {
    fn request(
        &self,
        action: Action,
        params: &Value,
        _now: i64,
    ) -> Result<http::Request<Full<Bytes>>, KeyError> {
        let key = params["key"].as_str().unwrap_or("");
        if key.is_empty() {
            // a blob that does not split: not one of ours
            return Err(KeyError::DoesNotOpen);
        }
        // our copy of the header text is wiped; the header value's own is hyper's
        let auth = match &*self.lock() {
            Some(t) => zeroize::Zeroizing::new(format!(
                "Bearer {}",
                String::from_utf8_lossy(t.value.expose())
            )),
            None => {
                return Err(KeyError::Unavailable(
                    "infisical KMS: no access token".into(),
                ))
            }
        };
        let key = percent_encode(key);
        let (method, path) = match action {
            Action::Encrypt => ("POST", format!("/api/v1/kms/keys/{key}/encrypt")),
            Action::Decrypt => ("POST", format!("/api/v1/kms/keys/{key}/decrypt")),
            _ => ("GET", format!("/api/v1/kms/keys/{key}")),
        };
        // an encrypt's body holds a DEK made here: wiped once sent
        let body = match params.get("body") {
            Some(b) => super::secret_json_body(&mut b.clone())?,
            None => Bytes::new(),
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", auth.as_str())
            .header("accept", "application/json");
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        req.body(Full::new(body))
            .map_err(|_| KeyError::Unavailable("request could not be built".into()))
    }

    fn response(&self, status: http::StatusCode, body: &[u8]) -> Result<Value, Failure> {
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            // expired or revoked: log in again on the next attempt
            *self.lock() = None;
            return Err(Failure::Retry(
                "auth",
                format!("access token refused (HTTP {})", status.as_u16()),
            ));
        }
        if !status.is_success() {
            return Err(failure_of(status));
        }
        serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                Failure::Final(KeyError::Unavailable(
                    "infisical KMS answered something that is not its JSON".into(),
                ))
            })
    }

    fn params(&self, call: &Call<'_>) -> Value {
        match call {
            Call::Encrypt(key, dek, _) => json!({
                "key": key,
                "body": { "plaintext": B64.encode(dek.expose()) },
            }),
            Call::Decrypt(blob, _) => match split_blob(blob) {
                Some((key, ct)) => json!({ "key": key, "body": { "ciphertext": ct } }),
                None => json!({ "key": "" }),
            },
            Call::DescribeKey(key) | Call::GenerateDataKey(key, _) => json!({ "key": key }),
        }
    }

    fn data_key(&self, _r: &Value) -> Result<RemoteDataKey, KeyError> {
        Err(KeyError::UnsupportedKeyUsage)
    }

    fn wraps_local_keys(&self) -> bool {
        true
    }

    fn wrapped_key(&self, key: &str, r: &Value, dek: DataKey) -> Result<RemoteDataKey, KeyError> {
        let ct = r
            .get("ciphertext")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                KeyError::Unavailable("infisical KMS answered encrypt without a ciphertext".into())
            })?;
        Ok(RemoteDataKey {
            cmk: cmk_of(key),
            blob: blob_of(key, ct),
            key: dek,
        })
    }

    fn plaintext(&self, r: &Value) -> Result<DataKey, KeyError> {
        r.get("plaintext")
            .and_then(Value::as_str)
            .and_then(super::decode_key)
            .ok_or_else(|| {
                KeyError::Unavailable("infisical KMS answered decrypt without a 32-byte key".into())
            })
    }

    fn usable(&self, r: &Value) -> Result<(), KeyError> {
        let key = r.get("key").ok_or(KeyError::CmkNotFound)?;
        if key.get("isDisabled").and_then(Value::as_bool) == Some(true) {
            return Err(KeyError::CmkDisabled);
        }
        Ok(())
    }

    fn login(&self, now: Instant) -> Option<Result<http::Request<Full<Bytes>>, KeyError>> {
        if matches!(&*self.lock(), Some(t) if now < t.renew_at) {
            return None;
        }
        // the client secret's copies here are wiped: the body once sent
        let mut body = json!({
            "clientId": self.creds.id,
            "clientSecret": String::from_utf8_lossy(self.creds.secret.expose()),
        });
        let body = match super::secret_json_body(&mut body) {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(
            http::Request::post(format!("{}/api/v1/auth/universal-auth/login", self.base))
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(Full::new(body))
                .map_err(|_| KeyError::Unavailable("login could not be built".into())),
        )
    }

    fn logged_in(&self, status: http::StatusCode, body: &[u8], at: Instant) -> Result<(), Failure> {
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Err(Failure::Final(KeyError::Unavailable(format!(
                "infisical KMS refused the universal-auth login (HTTP {})",
                status.as_u16()
            ))));
        }
        if !status.is_success() {
            return Err(failure_of(status));
        }
        let mut v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let token = v.get("accessToken").and_then(Value::as_str);
        let expires_in = v.get("expiresIn").and_then(Value::as_u64).unwrap_or(0);
        let out = match token {
            Some(t) if !t.is_empty() && expires_in > 0 => {
                *self.lock() = Some(Token {
                    value: SecretBytes::new(t.as_bytes().to_vec()),
                    renew_at: renew_at(at, expires_in),
                });
                Ok(())
            }
            _ => Err(Failure::Final(KeyError::Unavailable(
                "infisical KMS answered the login without a token".into(),
            ))),
        };
        // the parsed answer's copy of the token
        super::scrub(&mut v);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> Infisical {
        Infisical {
            base: "http://127.0.0.1:1".into(),
            creds: Credentials {
                id: "client".into(),
                secret: SecretBytes::new(b"s3cret".to_vec()),
            },
            token: Mutex::new(None),
        }
    }

    #[test]
    fn a_token_is_renewed_before_it_expires_and_dropped_when_refused() {
        let d = dialect();
        let t0 = Instant::now();
        // no token: log in first
        let login = d.login(t0).unwrap().unwrap();
        assert_eq!(login.uri().path(), "/api/v1/auth/universal-auth/login");
        d.logged_in(
            http::StatusCode::OK,
            br#"{"accessToken":"tok","expiresIn":100,"tokenType":"Bearer"}"#,
            t0,
        )
        .unwrap();
        // fresh: no login; calls carry the token
        assert!(d.login(t0 + Duration::from_secs(79)).is_none());
        let req = d
            .request(Action::DescribeKey, &json!({"key": "k1"}), 0)
            .unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer tok");
        // at 80 % of its lifetime: log in again (renewal)
        assert!(d.login(t0 + Duration::from_secs(80)).is_some());
        // a refused token is dropped at once
        assert!(matches!(
            d.response(http::StatusCode::FORBIDDEN, b"{}"),
            Err(Failure::Retry("auth", _))
        ));
        assert!(d.login(t0).is_some());
        // a refused login is final
        assert!(matches!(
            d.logged_in(http::StatusCode::UNAUTHORIZED, b"{}", t0),
            Err(Failure::Final(KeyError::Unavailable(_)))
        ));
    }

    #[test]
    fn the_blob_carries_the_key_id() {
        let b = blob_of("k-1", "abc=");
        assert_eq!(split_blob(&b), Some(("k-1", "abc=")));
        assert_eq!(split_blob(b"no-separator"), None);
        assert_eq!(split_blob(b"\0ct"), None);
    }
}
