//! Build facts for `stacksetd --version` and the `stacksetd_build_info` metric: the commit and the build date.
//!
//! - Commit: `GIT_COMMIT` when set (a container build has no .git: pass `--build-arg GIT_COMMIT=...`), else
//!   `git rev-parse` of the checkout, else `unknown`.
//! - Date: the UTC day of `SOURCE_DATE_EPOCH` when set (reproducible builds), else of the build.
//!
//! They reach the code as BUILD_INFO_*, not STACKSETD_*: `cargo run` passes a build script's variables to the
//! program, and the settings refuse unknown STACKSETD_* variables.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Only files that exist: a missing one would make cargo run this script, and rebuild the crate, every time.
    for file in [".git/HEAD", ".git/packed-refs"] {
        if Path::new(file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    if let Some(head) = std::fs::read_to_string(".git/HEAD").ok()
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        let file = format!(".git/{reference}");
        if Path::new(&file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }

    let commit = std::env::var("GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=BUILD_INFO_COMMIT={}", commit.trim());
    println!("cargo:rustc-env=BUILD_INFO_DATE={}", utc_date(seconds));
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
}

/// YYYY-MM-DD of a Unix time, UTC (the civil-from-days algorithm; no date crate for one line).
fn utc_date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
