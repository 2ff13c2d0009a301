//! Arming failpoints at start-up, for the crash tests
//! (`tests/tests/failpoints.rs`). The points themselves are `fail_point!`
//! one-liners at their sites in region-node and payments, compiled in only
//! with those crates' `failpoints` feature; this is the start-up step both
//! binaries share.

/// `FAILPOINTS` is set but the build has none: a crash test run against it
/// would pass without crashing anything, so the binary refuses to start.
#[derive(Debug, thiserror::Error)]
#[error(
    "FAILPOINTS is set but this build has no failpoints compiled in: build with \
     `cargo build --workspace --bins --features region-node/failpoints,payments/failpoints` \
     (scripts/test does)"
)]
pub struct NotCompiledIn;

/// The armed configuration; keep it alive for the life of the process.
pub struct Armed {
    /// What `FAILPOINTS` said, if anything (for the start-up log).
    pub names: Option<String>,
    _scenario: fail::FailScenario<'static>,
}

/// Arms what `FAILPOINTS` names (`name=action;…`, see the `fail` crate).
/// Panics on a malformed value, as `fail` does: only tests set it.
pub fn arm_from_env() -> Result<Armed, NotCompiledIn> {
    let names = std::env::var("FAILPOINTS").ok();
    if names.is_some() && !fail::has_failpoints() {
        return Err(NotCompiledIn);
    }
    Ok(Armed {
        names,
        _scenario: fail::FailScenario::setup(),
    })
}
