//! Alibaba Cloud KMS (OpenAPI, version 2016-01-20) as a remote provider:
//! ACS3-HMAC-SHA256-signed `GenerateDataKey`, `Decrypt` and `DescribeKey`,
//! sent as the new official SDK (`alibabacloud-kms20160120`) sends them —
//! `POST /?<parameters>` with an empty body — and signed by the same code
//! that verifies that SDK's requests (`kms::alibaba::sign`).

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{
    cloud_data_key, cloud_plaintext, cloud_usable, encryption_context, Action, Call, CloudSpelling,
    Credentials, Dialect, Failure,
};
use crate::config::ProviderSettings;
use crate::keys::provider::{KeyError, RemoteDataKey};
use crate::kms::alibaba::sign::{self, percent_encode};
use crate::kms::tencent::sign::RequestParts;
use crate::secret::DataKey;

/// The API version every request names.
pub const API_VERSION: &str = "2016-01-20";

/// The Alibaba dialect: endpoint and credential.
pub struct Alibaba {
    /// `host` header value (with the port, if the endpoint names one).
    host: String,
    /// `scheme://authority` requests go to.
    base: String,
    /// The credential.
    creds: Credentials,
}

impl Alibaba {
    /// The dialect for the settings and credential.
    pub fn new(settings: &ProviderSettings, creds: Credentials) -> Result<Alibaba, String> {
        let host = settings
            .endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("provider.endpoint has no host")?;
        let scheme = settings.endpoint.scheme_str().unwrap_or("https");
        Ok(Alibaba {
            base: format!("{scheme}://{host}"),
            host,
            creds,
        })
    }
}

/// The query string of `params`, sorted by name, RFC 3986-encoded.
pub fn query_of(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The headers of an ACS3-signed call with an empty body, `Authorization`
/// last; every header (those in `extra` too) is signed, names sorted.
pub fn signed_headers(
    creds: &Credentials,
    host: &str,
    action: &str,
    query: &str,
    date: &str,
    nonce: &str,
    extra: &[(&str, &str)],
) -> Result<Vec<(String, String)>, KeyError> {
    let body_hash = hex::encode(Sha256::digest(b""));
    let mut headers: Vec<(String, String)> = [
        ("accept", "application/json"),
        ("host", host),
        ("x-acs-action", action),
        ("x-acs-content-sha256", body_hash.as_str()),
        ("x-acs-date", date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-version", API_VERSION),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
    .collect();
    headers.sort();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signed: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query,
        headers: &pairs,
        body: b"",
    };
    let auth = sign::acs3_authorization(&creds.id, creds.secret.expose(), &parts, &signed)
        .map_err(|_| KeyError::Unavailable("the ACS3 signature could not be made".into()))?;
    headers.push(("authorization".into(), auth));
    Ok(headers)
}

/// An Alibaba error code as a failure: throttling and internal failures are
/// retried, key states map to their key errors, anything else is final.
fn failure_of(status: http::StatusCode, code: &str) -> Failure {
    if status == http::StatusCode::TOO_MANY_REQUESTS || code.starts_with("Rejected.Throttling") {
        return Failure::Throttled(format!("throttled: {}", crate::metrics::clean_label(code)));
    }
    if status.is_server_error() || code == "InternalFailure" || code == "ServiceUnavailable" {
        return Failure::Retry(
            "server_error",
            format!(
                "answered HTTP {} {}",
                status.as_u16(),
                crate::metrics::clean_label(code)
            ),
        );
    }
    Failure::Final(match code {
        "Forbidden.KeyNotFound" | "Forbidden.AliasNotFound" | "Forbidden.ResourceNotFound" => {
            KeyError::CmkNotFound
        }
        "Rejected.Disabled" => KeyError::CmkDisabled,
        "InvalidCiphertext" => KeyError::DoesNotOpen,
        other => KeyError::Unavailable(format!(
            "alibaba KMS refused the call: {}",
            crate::metrics::clean_label(other)
        )),
    })
}

impl Dialect for Alibaba {
    fn request(
        &self,
        action: Action,
        params: &Value,
        now: i64,
    ) -> Result<http::Request<Full<Bytes>>, KeyError> {
        let pairs: Vec<(&str, &str)> = params
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let query = query_of(&pairs);
        let date = sign::format_acs_date(now)
            .ok_or_else(|| KeyError::Unavailable("the clock is out of range".into()))?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let headers = signed_headers(
            &self.creds,
            &self.host,
            action.name(),
            &query,
            &date,
            &nonce,
            &[],
        )?;
        let mut req = http::Request::post(format!("{}/?{query}", self.base));
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(Full::new(Bytes::new()))
            .map_err(|_| KeyError::Unavailable("request could not be built".into()))
    }

    fn response(&self, status: http::StatusCode, body: &[u8]) -> Result<Value, Failure> {
        let v: Option<Value> = serde_json::from_slice(body).ok().filter(Value::is_object);
        if status == http::StatusCode::OK {
            return v.ok_or_else(|| {
                Failure::Final(KeyError::Unavailable(
                    "alibaba KMS answered something that is not its JSON".into(),
                ))
            });
        }
        let code = v
            .as_ref()
            .and_then(|v| v.get("Code"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Err(failure_of(status, code))
    }

    fn params(&self, call: &Call<'_>) -> Value {
        use base64::Engine as _;
        match call {
            Call::GenerateDataKey(key, template) => json!({
                "KeyId": key,
                "KeySpec": "AES_256",
                "EncryptionContext": encryption_context(template),
            }),
            Call::Decrypt(blob, template) => json!({
                "CiphertextBlob": base64::engine::general_purpose::STANDARD.encode(blob),
                "EncryptionContext": encryption_context(template),
            }),
            Call::DescribeKey(key) => json!({ "KeyId": key }),
            // the dialect makes data keys itself; an Encrypt is the same call shape
            Call::Encrypt(key, dek, template) => json!({
                "KeyId": key,
                "Plaintext": base64::engine::general_purpose::STANDARD.encode(dek.expose()),
                "EncryptionContext": encryption_context(template),
            }),
        }
    }

    fn data_key(&self, r: &Value) -> Result<RemoteDataKey, KeyError> {
        cloud_data_key(&SPELLING, r)
    }

    fn plaintext(&self, r: &Value) -> Result<DataKey, KeyError> {
        cloud_plaintext(&SPELLING, r)
    }

    fn usable(&self, r: &Value) -> Result<(), KeyError> {
        cloud_usable(&SPELLING, r)
    }
}

/// How Alibaba's KMS spells key states and the symmetric usage.
const SPELLING: CloudSpelling = CloudSpelling {
    name: "alibaba",
    pending_delete: "PendingDeletion",
    encrypt_decrypt: "ENCRYPT/DECRYPT",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    /// The first captured request of `alibabacloud-kms20160120` (ACS3, an
    /// Encrypt with an EncryptionContext holding a space, `+`, `/` and `=`):
    /// rebuilt with our query encoding and client signer from its parameters,
    /// the Authorization header is the same, byte for byte.
    #[test]
    fn signs_like_the_official_python_sdk() {
        let text = include_str!("../../../tests/sdk/vectors/alibaba_python_sdks.jsonl");
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["sdk"], "alibabacloud-kms20160120");
        let header = |name: &str| {
            v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
                .map(|h| h[1].as_str().unwrap().to_string())
                .unwrap()
        };
        let creds = Credentials {
            id: v["access_key_id"].as_str().unwrap().into(),
            secret: SecretBytes::new(v["access_key_secret"].as_str().unwrap().as_bytes().to_vec()),
        };
        // the parameters as the application gave them, re-encoded by us
        let query = query_of(&[
            ("KeyId", "k1"),
            ("Plaintext", "aGVsbG8="),
            ("EncryptionContext", r#"{"a":"b c","z":"+/="}"#),
        ]);
        let (ua, provider) = (header("user-agent"), header("x-acs-credentials-provider"));
        let ours = signed_headers(
            &creds,
            &header("host"),
            &header("x-acs-action"),
            &query,
            &header("x-acs-date"),
            &header("x-acs-signature-nonce"),
            &[
                ("user-agent", &ua),
                ("x-acs-credentials-provider", &provider),
            ],
        )
        .unwrap();
        let auth = &ours.last().unwrap().1;
        assert_eq!(auth, &header("Authorization"));
        // a wrong secret gives another signature (the check can fail)
        let other = Credentials {
            id: creds.id.clone(),
            secret: SecretBytes::new(b"another".to_vec()),
        };
        let theirs = signed_headers(
            &other,
            &header("host"),
            "Encrypt",
            &query,
            &header("x-acs-date"),
            &header("x-acs-signature-nonce"),
            &[
                ("user-agent", &ua),
                ("x-acs-credentials-provider", &provider),
            ],
        )
        .unwrap();
        assert_ne!(&theirs.last().unwrap().1, auth);
    }

    #[test]
    fn error_codes_decide_retry_or_final() {
        let s = |c| http::StatusCode::from_u16(c).unwrap();
        assert!(matches!(
            failure_of(s(429), "Rejected.Throttling"),
            Failure::Throttled(_)
        ));
        assert!(matches!(
            failure_of(s(503), ""),
            Failure::Retry("server_error", _)
        ));
        assert!(matches!(
            failure_of(s(404), "Forbidden.KeyNotFound"),
            Failure::Final(KeyError::CmkNotFound)
        ));
        assert!(matches!(
            failure_of(s(409), "Rejected.Disabled"),
            Failure::Final(KeyError::CmkDisabled)
        ));
    }
}
