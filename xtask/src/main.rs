//! `cargo xtask build | test | demo | bench | config`.
fn main() {}
