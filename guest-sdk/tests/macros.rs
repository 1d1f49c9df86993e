//! The SDK's macros at compile time (`trybuild`, on the host): each one used as documented
//! compiles (and the tables' schemas say what their attributes say), and each misuse they
//! reject fails with the message in its `.stderr` beside it. After changing a message on
//! purpose, `TRYBUILD=overwrite cargo test -p firefly-sdk --test macros` rewrites the
//! snapshots; review them like code.
#![allow(clippy::unwrap_used, reason = "a test")]

#[test]
fn macros_compile_as_documented_and_reject_misuse_with_a_clear_error() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/macros/pass/*.rs");
    cases.compile_fail("tests/macros/fail/*.rs");
}
