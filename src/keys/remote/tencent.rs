//! Tencent Cloud KMS (API 3.0, version 2019-01-18) as a remote provider:
//! TC3-HMAC-SHA256-signed `GenerateDataKey`, `Decrypt` and `DescribeKey`,
//! signed by the same code that verifies the official SDKs' requests
//! (`kms::tencent::sign`).
//!
//! Besides `content-type` and `host` (what the official SDKs sign), every
//! request signs `x-tc-action` and a random `x-tc-traceid`: TC3 lets the
//! client list more headers, and a retry within the same second then
//! carries a new signature (a KMS refusing replayed signatures — sealgate's
//! own face does — would refuse the resend).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{json, Value};

use super::{
    cloud_data_key, cloud_plaintext, cloud_usable, encryption_context, Action, Call, CloudSpelling,
    Credentials, Dialect, Failure,
};
use crate::config::ProviderSettings;
use crate::keys::provider::{KeyError, RemoteDataKey};
use crate::kms::tencent::sign::{self, RequestParts};
use crate::secret::DataKey;

/// The API version every request names.
pub const API_VERSION: &str = "2019-01-18";
/// The service in the TC3 credential scope.
const SERVICE: &str = "kms";

/// The Tencent dialect: endpoint, region and credential.
pub struct Tencent {
    /// `Host` header value (with the port, if the endpoint names one).
    host: String,
    /// The full URI requests go to.
    uri: http::Uri,
    /// The region every request names.
    region: String,
    /// The credential.
    creds: Credentials,
}

impl Tencent {
    /// The dialect for the settings and credential.
    pub fn new(settings: &ProviderSettings, creds: Credentials) -> Result<Tencent, String> {
        let host = settings
            .endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("provider.endpoint has no host")?;
        Ok(Tencent {
            host,
            uri: settings.endpoint.clone(),
            region: settings.region.clone(),
            creds,
        })
    }
}

/// The headers of a TC3-signed API 3.0 call, `Authorization` last. With
/// `trace_id` the signature also covers `x-tc-action` and `x-tc-traceid`;
/// without, it covers `content-type;host` as the official SDKs sign.
pub fn signed_headers(
    creds: &Credentials,
    region: &str,
    host: &str,
    action: &str,
    body: &[u8],
    timestamp: i64,
    trace_id: Option<&str>,
) -> Result<Vec<(String, String)>, KeyError> {
    let ts = timestamp.to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Host", host),
        ("X-TC-Action", action),
        ("X-TC-Timestamp", &ts),
        ("X-TC-Version", API_VERSION),
        ("X-TC-Region", region),
        ("X-TC-RequestClient", "sealgate"),
    ];
    let mut signed = vec!["content-type", "host"];
    if let Some(t) = trace_id {
        headers.push(("X-TC-TraceId", t));
        signed.extend(["x-tc-action", "x-tc-traceid"]);
    }
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body,
    };
    let auth = sign::tc3_authorization(
        &creds.id,
        creds.secret.expose(),
        SERVICE,
        timestamp,
        &parts,
        &signed,
    )
    .map_err(|_| KeyError::Unavailable("the TC3 signature could not be made".into()))?;
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push(("Authorization".into(), auth));
    Ok(out)
}

/// A Tencent error code as a failure: throttling and internal errors are
/// retried, key states map to their key errors, anything else is final.
fn failure_of(code: &str) -> Failure {
    let final_ = |e| Failure::Final(e);
    if code.starts_with("RequestLimitExceeded") {
        return Failure::Throttled(format!("throttled: {code}"));
    }
    if code.starts_with("InternalError") || code == "ServiceUnavailable" {
        return Failure::Retry("server_error", format!("answered {code}"));
    }
    match code {
        "ResourceUnavailable.CmkNotFound" | "ResourceNotFound" => final_(KeyError::CmkNotFound),
        "ResourceUnavailable.CmkDisabled" => final_(KeyError::CmkDisabled),
        "ResourceUnavailable.CmkStateNotSupport" => final_(KeyError::InvalidState(
            "the remote CMK's state does not allow this".into(),
        )),
        "InvalidParameterValue.InvalidCiphertext" => final_(KeyError::DoesNotOpen),
        "InvalidParameterValue.InvalidKeyUsage" => final_(KeyError::UsageMismatch),
        other => final_(KeyError::Unavailable(format!(
            "tencent KMS refused the call: {}",
            crate::metrics::clean_label(other)
        ))),
    }
}

impl Dialect for Tencent {
    fn request(
        &self,
        action: Action,
        params: &Value,
        now: i64,
    ) -> Result<http::Request<Full<Bytes>>, KeyError> {
        // an Encrypt's body would hold a DEK made here: wiped once sent
        let body = super::secret_json_body(&mut params.clone())?;
        let trace = uuid::Uuid::new_v4().to_string();
        let headers = signed_headers(
            &self.creds,
            &self.region,
            &self.host,
            action.name(),
            &body,
            now,
            Some(&trace),
        )?;
        let mut req = http::Request::post(self.uri.clone());
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req.body(Full::new(body))
            .map_err(|_| KeyError::Unavailable("request could not be built".into()))
    }

    fn response(&self, status: http::StatusCode, body: &[u8]) -> Result<Value, Failure> {
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(Failure::Throttled("answered HTTP 429".into()));
        }
        if status.is_server_error() {
            return Err(Failure::Retry(
                "server_error",
                format!("answered HTTP {}", status.as_u16()),
            ));
        }
        if status != http::StatusCode::OK {
            return Err(Failure::Final(KeyError::Unavailable(format!(
                "tencent KMS answered HTTP {}",
                status.as_u16()
            ))));
        }
        let mut v: Value = serde_json::from_slice(body).map_err(|_| {
            Failure::Final(KeyError::Unavailable(
                "tencent KMS answered something that is not its JSON".into(),
            ))
        })?;
        let mut resp = v
            .get_mut("Response")
            .map(Value::take)
            .filter(Value::is_object)
            .ok_or_else(|| {
                Failure::Final(KeyError::Unavailable(
                    "tencent KMS answered without a Response object".into(),
                ))
            })?;
        if let Some(code) = resp
            .get("Error")
            .and_then(|e| e.get("Code"))
            .and_then(Value::as_str)
        {
            return Err(failure_of(code));
        }
        Ok(resp.take())
    }

    fn params(&self, call: &Call<'_>) -> Value {
        match call {
            Call::GenerateDataKey(key, template) => json!({
                "KeyId": key,
                "KeySpec": "AES_256",
                "EncryptionContext": encryption_context(template),
            }),
            Call::Decrypt(blob, template) => json!({
                "CiphertextBlob": B64.encode(blob),
                "EncryptionContext": encryption_context(template),
            }),
            Call::DescribeKey(key) => json!({ "KeyId": key }),
            // the dialect makes data keys itself; an Encrypt is the same call shape
            Call::Encrypt(key, dek, template) => json!({
                "KeyId": key,
                "Plaintext": B64.encode(dek.expose()),
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

/// How Tencent's KMS spells key states and the symmetric usage.
const SPELLING: CloudSpelling = CloudSpelling {
    name: "tencent",
    pending_delete: "PendingDelete",
    encrypt_decrypt: "ENCRYPT_DECRYPT",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    /// The first captured request of the official Python SDK
    /// (tencentcloud-sdk-python 3.1.192, TC3 over POST): rebuilt with our
    /// client signer, the Authorization header is the same, byte for byte.
    #[test]
    fn signs_like_the_official_python_sdk() {
        let text = include_str!("../../../tests/sdk/vectors/tencent_python_sdk_3.1.192.jsonl");
        let v: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["sign_method"], "TC3-HMAC-SHA256");
        assert_eq!(v["method"], "POST");
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
            id: v["secret_id"].as_str().unwrap().into(),
            secret: SecretBytes::new(v["secret_key"].as_str().unwrap().as_bytes().to_vec()),
        };
        let ts: i64 = header("X-TC-Timestamp").parse().unwrap();
        let ours = signed_headers(
            &creds,
            &header("X-TC-Region"),
            &header("Host"),
            &header("X-TC-Action"),
            v["body"].as_str().unwrap().as_bytes(),
            ts,
            None,
        )
        .unwrap();
        let get = |name: &str| {
            ours.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("Authorization"), header("Authorization"));
        for h in [
            "Content-Type",
            "Host",
            "X-TC-Action",
            "X-TC-Timestamp",
            "X-TC-Version",
            "X-TC-Region",
        ] {
            assert_eq!(get(h), header(h), "{h}");
        }
        // a wrong secret gives another signature (the check can fail)
        let other = Credentials {
            id: creds.id.clone(),
            secret: SecretBytes::new(b"another".to_vec()),
        };
        let theirs = signed_headers(
            &other,
            "ap-guangzhou",
            &header("Host"),
            "Encrypt",
            v["body"].as_str().unwrap().as_bytes(),
            ts,
            None,
        )
        .unwrap();
        assert_ne!(theirs.last().unwrap().1, header("Authorization"));
    }

    #[test]
    fn a_trace_id_is_signed_so_each_request_differs() {
        let creds = Credentials {
            id: "AKIDx".into(),
            secret: SecretBytes::new(b"s".to_vec()),
        };
        let a = signed_headers(
            &creds,
            "r",
            "h:1",
            "Decrypt",
            b"{}",
            1_795_434_443,
            Some("t1"),
        )
        .unwrap();
        let b = signed_headers(
            &creds,
            "r",
            "h:1",
            "Decrypt",
            b"{}",
            1_795_434_443,
            Some("t2"),
        )
        .unwrap();
        let auth = |h: &[(String, String)]| h.last().unwrap().1.clone();
        assert!(auth(&a).contains("SignedHeaders=content-type;host;x-tc-action;x-tc-traceid"));
        assert_ne!(auth(&a), auth(&b));
    }

    #[test]
    fn error_codes_decide_retry_or_final() {
        assert!(matches!(
            failure_of("RequestLimitExceeded"),
            Failure::Throttled(_)
        ));
        assert!(matches!(
            failure_of("InternalError"),
            Failure::Retry("server_error", _)
        ));
        assert!(matches!(
            failure_of("ResourceUnavailable.CmkNotFound"),
            Failure::Final(KeyError::CmkNotFound)
        ));
        assert!(matches!(
            failure_of("AuthFailure.SignatureFailure"),
            Failure::Final(KeyError::Unavailable(_))
        ));
    }
}
