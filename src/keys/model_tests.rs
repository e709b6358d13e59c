//! Unit tests of the key state machine.
