//! kms

pub mod alibaba;
pub mod tencent;
