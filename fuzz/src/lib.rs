//! The bodies of the fuzz targets live in `checks.rs`, which the stable regression test in
//! `crates/core/tests/fuzz_regressions.rs` includes too.
pub mod checks;
