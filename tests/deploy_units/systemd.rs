//! deploy/systemd: the unit through `systemd-analyze verify` and `security`, and its key directives.

use std::collections::BTreeMap;
use std::process::Command;

use super::*;

/// `systemd-analyze` from PATH; a missing tool is a failure (scripts/test.sh installs it), never a skip.
fn systemd_analyze() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze is not installed, so the systemd unit cannot be checked. Run scripts/test.sh \
                 (it installs it) or, as root: apt-get update && apt-get install -y --no-install-recommends systemd"
            )
        })
}

/// A copy of deploy/systemd/stacksetd.service, named like the original, whose ExecStart runs the binary cargo
/// just built, so that `verify` (which checks that ExecStart is executable) works without installing anything.
fn unit_with_built_binary() -> (tempfile::TempDir, PathBuf) {
    let text = read("deploy/systemd/stacksetd.service");
    let exec_start = format!("ExecStart={INSTALLED_BINARY} run");
    assert_eq!(
        text.lines().filter(|l| *l == exec_start).count(),
        1,
        "the unit must start the daemon exactly once with `{exec_start}`"
    );
    let built = env!("CARGO_BIN_EXE_stacksetd");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("stacksetd.service");
    std::fs::write(
        &path,
        text.replace(&exec_start, &format!("ExecStart={built} run")),
    )
    .expect("write the unit copy");
    (dir, path)
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let tool = systemd_analyze();
    let (_dir, unit) = unit_with_built_binary();
    let (ok, stdout, stderr) = run(Command::new(tool).arg("verify").arg(&unit));
    // verify exits 0 even for unknown keys and unparsable values (it ignores them), so any message is a failure.
    assert!(
        ok && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify complains about deploy/systemd/stacksetd.service:\n{stdout}{stderr}"
    );
}

/// The number in `→ Overall exposure level for stacksetd.service: 1.0 OK 🙂`.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn overall_exposure_is_parsed_from_the_report_line() {
    let report = "✓ UMask=  Files created by service are accessible only by service's own user\n\n\
                  → Overall exposure level for stacksetd.service: 1.7 OK 🙂\n";
    assert_eq!(overall_exposure(report), Some(1.7));
    assert_eq!(overall_exposure("no summary here"), None);
}

#[test]
fn systemd_analyze_security_rates_the_unit_at_most_2() {
    let tool = systemd_analyze();
    let (_dir, unit) = unit_with_built_binary();
    let (_, stdout, stderr) = run(Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let exposure = overall_exposure(&stdout).unwrap_or_else(|| {
        panic!(
            "no `Overall exposure level` in systemd-analyze security's output:\n{stdout}{stderr}"
        )
    });
    println!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is above {MAX_EXPOSURE}; the findings:\n{stdout}"
    );
}

/// The `[Service]` section as key -> every value given (systemd allows repeating most keys).
fn service_section(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a key=value line in the unit: {line}"));
        keys.entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    keys
}

#[test]
fn the_unit_runs_a_notify_service_with_its_config_env_file_and_a_longer_stop_timeout_than_the_drain()
 {
    let service = service_section(&read("deploy/systemd/stacksetd.service"));
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] {key}= must be set exactly once, found {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify", "the daemon sends READY=1/STOPPING=1");
    assert_eq!(one("NotifyAccess"), "main");
    assert!(humantime::parse_duration(one("WatchdogSec")).is_ok());
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("ConfigurationDirectory"), "stacksetd");
    assert_eq!(one("EnvironmentFile"), "-/etc/stacksetd/stacksetd.env");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("ProtectSystem"), "strict");

    let stop =
        humantime::parse_duration(one("TimeoutStopSec")).expect("TimeoutStopSec is a duration");
    let drain = documented_shutdown_timeout();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop:?} must exceed the drain (shutdown_timeout {drain:?}), or systemd kills a clean shutdown"
    );

    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    for needed in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        assert!(
            families.contains(&needed),
            "{needed} is needed (AWS, the HTTP port, sd-notify)"
        );
    }
    // AWS endpoints have no fixed addresses: an IP deny list may only drop what stacksetd never talks to.
    let denied: Vec<&str> = service
        .get("IPAddressDeny")
        .into_iter()
        .flatten()
        .flat_map(|v| v.split_whitespace())
        .collect();
    for internet in ["any", "0.0.0.0/0", "::/0"] {
        assert!(
            !denied.contains(&internet),
            "IPAddressDeny={internet} would cut stacksetd off from AWS"
        );
    }
}

#[test]
fn the_environment_file_example_names_only_aws_variables_and_real_settings() {
    let text = read("deploy/systemd/stacksetd.env.example");
    let mut stacksetd_vars = Vec::new();
    let mut aws_vars = 0;
    for line in text.lines().map(str::trim) {
        // Examples are commented out as `#KEY=value`; prose comments have a space after the `#`.
        let Some(assignment) = line
            .strip_prefix('#')
            .filter(|l| !l.starts_with([' ', '#']))
        else {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "only commented examples belong in the example file: {line}"
            );
            continue;
        };
        let Some((key, value)) = assignment.split_once('=') else {
            continue;
        };
        if key.starts_with("STACKSETD_") {
            stacksetd_vars.push((key.to_string(), value.to_string()));
        } else {
            assert!(key.starts_with("AWS_"), "unexpected variable {key}");
            aws_vars += 1;
        }
    }
    assert!(
        aws_vars > 0 && !stacksetd_vars.is_empty(),
        "the example shows AWS and STACKSETD_ variables"
    );
    settings_with_env(&stacksetd_vars).unwrap_or_else(|e| {
        panic!("the example's STACKSETD_ variables are not valid settings: {e}")
    });
}
