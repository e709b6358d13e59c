//! kms
