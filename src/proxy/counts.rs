//! What happened to the fields of one request: values sealed and opened,
//! per CMK version, and the fields that did not open. Logs, metrics and the
//! audit log read it; it never holds a value.

use crate::envelope::CmkRef;

/// What happened to a body's fields, for logs, metrics and the audit log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldCounts {
    /// Values sealed.
    pub sealed: u32,
    /// Envelopes opened.
    pub opened: u32,
    /// Selected values passed through as plaintext (migration).
    pub passed_plaintext: u32,
    /// Values sealed or opened, per operation and CMK version.
    pub batches: Vec<KeyBatch>,
    /// Fields that did not open, by reason (also those kept as envelopes).
    pub open_failures: Vec<(&'static str, u32)>,
}

/// Sealing or opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// Values sealed.
    Seal,
    /// Envelopes opened.
    Open,
}

/// How many values one operation did under one CMK version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBatch {
    /// Seal or open.
    pub op: FieldOp,
    /// The CMK version.
    pub cmk: CmkRef,
    /// How many values.
    pub count: u32,
}

impl FieldCounts {
    /// Notes one value sealed or opened under `cmk`.
    pub(super) fn note(&mut self, op: FieldOp, cmk: CmkRef) {
        match op {
            FieldOp::Seal => self.sealed += 1,
            FieldOp::Open => self.opened += 1,
        }
        match self.batches.iter_mut().find(|b| b.op == op && b.cmk == cmk) {
            Some(b) => b.count += 1,
            None => self.batches.push(KeyBatch { op, cmk, count: 1 }),
        }
    }

    /// Notes one field that did not open.
    pub(super) fn failed(&mut self, reason: &'static str) {
        match self.open_failures.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.open_failures.push((reason, 1)),
        }
    }
}
