//! The `sealgate` binary: CLI only.
fn main() {}
