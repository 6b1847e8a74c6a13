//! The first hour of a new user, as processes: `stacksetd demo` tells a true story once, and `demo --serve`
//! shows the daemon's page and metrics on the simulated organization within a minute, changing as it runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon_support::{eventually_or, get, metric};

/// The demo's whole story takes about 10 s on a 2-core machine in a debug build; this only catches a hang.
const DEMO_HANG: Duration = Duration::from_secs(120);
/// A new user sees a joined account, a publication and a blocked account on the page within this long.
const FIRST_MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_demo_tells_its_story_once_and_true() {
    let started = Instant::now();
    let output = crate::common::stacksetd_offline()
        .arg("demo")
        .output()
        .expect("stacksetd demo runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(elapsed < DEMO_HANG, "the demo took {elapsed:?}");
    eprintln!("stacksetd demo took {elapsed:?} (debug build)");
    // The story says what the log would: nothing is printed twice on stderr beside it.
    assert!(stderr.trim().is_empty(), "the demo's stderr: {stderr}");

    // Every template warning once per version: a later plan of the same version counts them instead.
    let mut printed: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut version = String::new();
    for line in stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("template sha256:") {
            version = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        } else if let Some(warning) = line.strip_prefix("warning:") {
            *printed
                .entry((version.clone(), warning.to_string()))
                .or_default() += 1;
        }
    }
    assert!(
        !printed.is_empty(),
        "the demo's templates have warnings:\n{stdout}"
    );
    let repeated: Vec<_> = printed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "printed more than once: {repeated:?}");
    assert!(
        stdout.contains("template warning(s) for this version, as printed above"),
        "a later plan of a version counts its warnings"
    );

    // Each deletion the plan announces is the one submitted: same summary, same count.
    let planned: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- DeleteStackInstances: "))
        .collect();
    assert!(!planned.is_empty(), "{stdout}");
    for summary in planned {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains("DeleteStackInstances submitted as") && l.ends_with(summary)),
            "planned {summary:?} but submitted something else:\n{stdout}"
        );
    }

    // A wait the demo keeps is announced with its reason.
    let waits: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("waits for deletion_delay ("))
        .collect();
    assert!(!waits.is_empty(), "{stdout}");
    assert!(
        waits
            .iter()
            .all(|l| l.contains(stacksetd::controller::DELETION_DELAY_REASON)),
        "{waits:?}"
    );
}

/// `demo --serve` on a free port: the banner names the address; /metrics and /status answer, and within the first
/// minute an account joins and an account is blocked, both visible in what the daemon serves; Ctrl-C stops it.
#[tokio::test(flavor = "multi_thread")]
async fn demo_serve_shows_the_page_and_metrics_and_keeps_changing() {
    let mut child = crate::common::stacksetd_offline()
        .args(["--listen", "127.0.0.1:0", "demo", "--serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stacksetd demo --serve starts");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let printed = || lines.lock().unwrap().join("\n");
    let started = Instant::now();
    let addr = eventually_or(
        Duration::from_secs(30),
        "the banner's page address",
        || async {
            lines.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("the page     http://")
                    .map(|a| a.trim_end_matches('/').to_string())
            })
        },
        printed,
    )
    .await;

    assert_eq!(
        get(&addr, "/").await.status,
        200,
        "the page answers at once"
    );

    // The organization changes, and the daemon sees it: an account joins (targeted grows past the 40 active
    // members), then a blocked account shows on /status and in /metrics.
    let blocked = eventually_or(
        FIRST_MINUTE,
        "a blocked account on /status and a joined account in /metrics",
        || async {
            let status = get(&addr, "/status").await.json();
            let counts = &status["deployments"]["aimably"]["observed"]["organization"]["counts"];
            let failed = counts["failed"].as_u64().unwrap_or(0);
            let metrics = get(&addr, "/metrics").await.body;
            let targeted = metric(
                &metrics,
                "stacksetd_accounts_targeted",
                &[("deployment", "aimably")],
            )
            .unwrap_or(0.0);
            (failed >= 1 && targeted > 40.0).then_some(failed)
        },
        printed,
    )
    .await;
    assert!(blocked >= 1);
    let metrics = get(&addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "stacksetd_build_info",
            &[
                ("version", stacksetd::build::VERSION),
                ("commit", stacksetd::build::COMMIT)
            ]
        ),
        Some(1.0),
        "the build-info metric names this build"
    );
    let page = get(&addr, "/").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("aimably"),
        "the page names the deployment"
    );
    assert!(
        page.body.contains("class=\"blocked some\""),
        "the page's headline counts the blocked account"
    );
    let events = printed();
    assert!(events.contains("joins the"), "{events}");
    assert!(events.contains("so it is blocked"), "{events}");
    eprintln!(
        "demo --serve: a joined and a blocked account visible after {:?}",
        started.elapsed()
    );

    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let code = crate::daemon_support::process::wait_child(&mut child, Duration::from_secs(20))
        .expect("demo --serve stops on SIGINT");
    assert!(code.success(), "{code}");
}

/// `stacksetd run` on a fresh machine, before the desired state exists, not even its directory: the daemon stays
/// up (live, not ready, saying why), and takes the file once the directory and the file appear.
#[tokio::test(flavor = "multi_thread")]
async fn run_before_the_desired_states_directory_exists_waits_for_it() {
    use crate::daemon_support::process::{DaemonProcess, WAIT};
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc").join("stacksetd");
    let desired = etc.join("desired.yaml");
    let daemon = DaemonProcess::spawn(crate::common::stacksetd_offline(), &desired, &[]);
    assert_eq!(get(&daemon.addr, "/healthz").await.status, 200, "live");
    let ready = get(&daemon.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "not ready without a desired state");
    assert!(
        ready.body.contains("no valid desired state"),
        "{}",
        ready.body
    );
    let status = get(&daemon.addr, "/status").await.json();
    assert_eq!(
        status["desiredState"]["lastLoad"]["result"], "unreadable",
        "{status}"
    );

    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        &desired,
        crate::daemon_support::deployment_yaml(
            "late",
            "LateStackSet",
            "appeared later",
            "us-west-2",
        ),
    )
    .unwrap();
    let status = eventually_or(
        WAIT,
        "the file taken once it appears",
        || async {
            let status = get(&daemon.addr, "/status").await.json();
            (status["desiredState"]["lastLoad"]["result"] == "valid").then_some(status)
        },
        || format!("{:?}", daemon.logs.lock().unwrap()),
    )
    .await;
    assert!(status["deployments"]["late"].is_object(), "{status}");
    assert!(child_alive(&daemon), "the daemon is still running");
}

fn child_alive(daemon: &crate::daemon_support::process::DaemonProcess) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &daemon.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// `--version` names the commit and the build day; it is the checkout's commit when built from one.
#[test]
fn the_version_names_the_commit_and_the_build_date() {
    let output = crate::common::stacksetd_offline()
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let rest = text
        .trim()
        .strip_prefix(&format!("stacksetd {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, date) = rest
        .trim_end_matches(')')
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{date}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs (the suite runs from a checkout)");
    assert!(head.status.success(), "a checkout");
    assert_eq!(
        commit,
        String::from_utf8_lossy(&head.stdout).trim(),
        "{text}"
    );
}

/// The completion scripts and the manual page come from the parser itself: every subcommand is in them, and the
/// bash script parses.
#[test]
fn completions_and_the_manual_page_cover_every_subcommand() {
    let run = |args: &[&str]| {
        let output = crate::common::stacksetd_offline()
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let subcommands = [
        "run",
        "reconcile",
        "plan",
        "validate",
        "status",
        "template",
        "health",
        "demo",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("stacksetd.bash");
    std::fs::write(&bash, run(&["completions", "bash"])).unwrap();
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .status()
        .unwrap();
    assert!(status.success(), "the bash completion script parses");

    let page = run(&["man"]);
    assert!(page.contains(".TH stacksetd 1"), "{page}");
    for sub in subcommands {
        assert!(
            page.contains(&format!("stacksetd\\-{sub}")) || page.contains(sub),
            "the page lacks {sub}"
        );
    }
    assert!(
        page.contains(stacksetd::build::COMMIT),
        "the page names the build"
    );
}

/// AWS failures before any answer read as one line each with the fix: no credentials anywhere in the chain, and
/// nothing listening at the endpoint. The SDK's Debug output (`DispatchFailure(..)`, `ProviderChainError { .. }`)
/// never reaches the user.
#[test]
fn aws_failures_before_any_answer_are_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.yaml");
    std::fs::write(
        &desired,
        crate::daemon_support::deployment_yaml("first", "FirstStackSet", "first", "us-west-2"),
    )
    .unwrap();
    let run = |no_credentials: bool| {
        let mut command = crate::common::stacksetd_offline();
        if no_credentials {
            command
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env("HOME", dir.path());
        }
        let output = command
            .arg("--desired")
            .arg(&desired)
            .arg("plan")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    for (no_credentials, fix) in [
        (
            true,
            "no AWS credentials: give the management account's credentials through the standard chain",
        ),
        (
            false,
            "nothing listens at the endpoint: check AWS_ENDPOINT_URL",
        ),
    ] {
        let text = run(no_credentials);
        let line = text
            .lines()
            .find(|l| l.contains("sts:GetCallerIdentity failed"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains(fix), "{line}");
        for internal in [
            "DispatchFailure",
            "ConnectorError",
            "ProviderChainError",
            "CredentialsNotLoaded",
            "{ ",
            "\\u{000a}",
        ] {
            assert!(!text.contains(internal), "`{internal}` printed:\n{text}");
        }
    }
}

/// `demo --listen` without `--serve` opened no port and said nothing; now it says where --listen applies.
#[test]
fn demo_listen_without_serve_is_refused_with_the_reason() {
    let output = crate::common::stacksetd_offline()
        .args(["--listen", "127.0.0.1:0", "demo"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen applies to `stacksetd demo --serve`"),
        "{stderr}"
    );
}
