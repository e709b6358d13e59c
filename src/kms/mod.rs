//! kms

pub mod tencent;
