//! What this binary is, from `build.rs`: `stacksetd --version` prints it, and the `stacksetd_build_info` metric
//! carries it as labels, so a dashboard shows which build each replica runs.

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit built (12 hex digits), or `unknown` (a build from a tarball without `GIT_COMMIT`).
pub const COMMIT: &str = env!("BUILD_INFO_COMMIT");
/// The UTC day of the build (`SOURCE_DATE_EPOCH`'s, when set), YYYY-MM-DD.
pub const DATE: &str = env!("BUILD_INFO_DATE");
/// `--version`'s text after the program name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_INFO_COMMIT"),
    ", built ",
    env!("BUILD_INFO_DATE"),
    ")"
);
