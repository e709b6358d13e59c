//! KMS instance API (placeholder while sign/wire/advance build).
