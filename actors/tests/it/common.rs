//! Fixtures shared by the integration tests.

pub use huddle_testsupport::{eventually, within};
