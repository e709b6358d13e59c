//! The Tencent Cloud KMS face (API 3.0, version 2019-01-18, service `kms`).
//!
//! Pure parts, usable without the key store or a runtime:
//! - [`sign`]: TC3-HMAC-SHA256 and signature-v1 verification (and signing,
//!   for tests and clients);
//! - [`wire`]: the response envelope, error codes, per-action quotas and the
//!   typed, validated requests of every action;
//! - [`legacy`]: the legacy API 2.0 (`/v2/index.php`): its actions, their
//!   lower-camel parameters mapped onto [`wire`]'s requests, its flat body.
//!
//! [`face`] is the HTTP handler (request → [`sign::verify`] → replay check
//! → rate limit →
//! [`wire::parse_request`] → key store → [`wire::success_body`]) that wires
//! them to the store; [`errors`] turns store errors into Tencent codes, in
//! one place.

pub mod errors;
pub mod face;
pub mod legacy;
pub mod sign;
pub mod wire;

pub use face::TencentFace;
