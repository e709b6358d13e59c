//! The Alibaba Cloud KMS face (OpenAPI version 2016-01-20, and the KMS
//! instance API of `alibabacloud-dkms-gcs`).
//!
//! Pure parts, usable without the key store or a runtime:
//! - [`sign`]: ACS3-HMAC-SHA256 and RPC signature v1 verification (and
//!   signing, for tests and clients), timestamp window and nonce replay cache;
//! - [`wire`]: response and error bodies, error codes with their HTTP
//!   statuses, quota classes, and the typed, validated requests of every
//!   action served;
//! - [`advance`]: AdvanceEncrypt / AdvanceDecrypt crypto and the
//!   self-describing Advance CiphertextBlob;
//! - [`instance`]: the KMS instance API — protobuf messages, headers and the
//!   RSA_PKCS1_SHA_256 request signature;
//! - [`instance_actions`]: every key operation of the instance API — typed
//!   requests, their application to the key store, protobuf responses.
//!
//! Wired to the key store:
//! - [`face`]: [`AlibabaFace`], the handler (request → [`sign::verify`] or
//!   [`instance::verify`] → rate limit by [`wire::class_of`] →
//!   [`wire::parse_request`] → key store → [`wire::success_body`] /
//!   [`instance`] encoders);
//! - [`errors`]: store errors as Alibaba codes and statuses, in one place;
//! - [`client_keys`]: the instance API's registered client public keys.

pub mod advance;
pub mod client_keys;
pub mod errors;
pub mod face;
pub mod instance;
pub mod instance_actions;
pub mod sign;
pub mod wire;

pub use face::AlibabaFace;
