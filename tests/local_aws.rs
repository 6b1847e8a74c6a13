//! scripts/local-aws.sh, the local AWS for trying stacksetd without an account, as a new user runs it: start it
//! (on a free port, its files in a temporary directory), run the commands it prints with the environment it
//! writes, and stop it. The script sets up moto itself (scripts/setup-moto.sh): without python3 or the virtualenv
//! it fails, and so does this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{assert_exit, describe_output, run};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo_root().join("scripts/local-aws.sh")
}

/// The script with its port and directory, and none of the caller's AWS or stacksetd settings, run from `dir`'s
/// parent (the script runs from any directory; it prints paths below the current one relative to it).
fn local_aws(dir: &Path, port: u16, args: &[&str]) -> Command {
    let mut command = Command::new(script());
    clean_env(&mut command);
    command
        .args(args)
        .env("LOCAL_AWS_PORT", port.to_string())
        .env("LOCAL_AWS_DIR", dir)
        .current_dir(dir.parent().expect("the directory has a parent"))
        .stdin(Stdio::null());
    command
}

fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("STACKSETD_") {
            command.env_remove(&key);
        }
    }
}

/// Stops the local AWS when the test ends, passed or not (the script's `stop` is a no-op once stopped).
struct StopOnDrop {
    dir: PathBuf,
    port: u16,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = local_aws(&self.dir, self.port, &["stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `export NAME=VALUE` lines of the env file (what `. env` sets; the values are plain, unquoted).
fn exports(env_file: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(env_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", env_file.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .map(|assignment| {
            let (name, value) = assignment
                .split_once('=')
                .unwrap_or_else(|| panic!("not NAME=VALUE in the env file: {assignment}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The stacksetd binary with exactly the env file's variables for AWS (the host's profile and config files out of
/// reach), as a user who sourced the file has.
fn stacksetd(env: &BTreeMap<String, String>, desired: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stacksetd"));
    clean_env(&mut command);
    command
        .envs(env)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("NO_COLOR", "1")
        .arg("--desired")
        .arg(desired)
        .stdin(Stdio::null());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn the_local_aws_script_starts_seeds_and_stops_and_its_printed_commands_converge() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("local-aws");
    let port = free_port();
    let _stop = StopOnDrop {
        dir: dir.clone(),
        port,
    };

    let output = run(local_aws(&dir, port, &[])).await;
    assert_exit(&output, 0, "scripts/local-aws.sh");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    let desired = dir.join("desired.yaml");
    let env_file = dir.join("env");
    // Run from the temporary directory: the files relative to it, the script by its absolute path, with the
    // directory `stop` needs.
    for line in [
        ". local-aws/env".to_string(),
        "stacksetd --desired local-aws/desired.yaml plan".to_string(),
        "stacksetd --desired local-aws/desired.yaml reconcile --once".to_string(),
        "stacksetd --desired local-aws/desired.yaml run      # then open http://127.0.0.1:9464/"
            .to_string(),
        format!(
            "LOCAL_AWS_DIR={} {} stop",
            dir.display(),
            script().display()
        ),
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "the script prints {line:?}:\n{printed}"
        );
    }
    let pid_file = dir.join("moto.pid");
    assert!(pid_file.exists(), "{} while running", pid_file.display());
    assert!(dir.join("moto.log").exists());

    // A second start refuses and says how to stop the first.
    let again = run(local_aws(&dir, port, &[])).await;
    assert_exit(&again, 1, "a second scripts/local-aws.sh");
    let said = describe_output(&again);
    assert!(
        said.contains("already running") && said.contains(" stop"),
        "{said}"
    );

    let shown = run(local_aws(&dir, port, &["env"])).await;
    assert_exit(&shown, 0, "scripts/local-aws.sh env");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("# {}", env_file.display())),
        "{}",
        describe_output(&shown)
    );

    let env = exports(&env_file);
    let expected: BTreeMap<String, String> = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(env, expected, "{}", env_file.display());

    let org: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("org.json")).expect("org.json"))
            .expect("org.json is JSON");
    let management = org["managementAccountId"]
        .as_str()
        .expect("management account");
    assert_eq!(management, "123456789012");
    let members: BTreeSet<String> = org["memberAccounts"]
        .as_array()
        .expect("member accounts")
        .iter()
        .map(|a| a["id"].as_str().expect("account id").to_string())
        .collect();
    assert!(
        (8..=12).contains(&members.len()),
        "8 to 12 member accounts: {members:?}"
    );
    let nested = org["organizationalUnits"]
        .as_array()
        .expect("OUs")
        .iter()
        .any(|ou| ou["parentId"] != org["rootId"]);
    assert!(nested, "an OU below another: {org}");

    let text = std::fs::read_to_string(&desired).expect("desired.yaml");
    let template = repo_root().join("config/templates/aimably-data-only.json");
    assert!(
        text.contains(&format!("url: \"file://{}\"", template.display()))
            && text.contains("policy: DataOnly")
            && text.contains(&format!("managementAccountId: \"{management}\""))
            && text.contains(&format!("ManagementAccountId: \"{management}\"")),
        "{text}"
    );
    let mut validate = stacksetd(&env, &desired);
    validate.arg("validate").arg(&desired);
    assert_exit(&run(validate).await, 0, "stacksetd validate desired.yaml");

    let mut plan = stacksetd(&env, &desired);
    plan.arg("plan");
    let output = run(plan).await;
    assert_exit(&output, 0, "stacksetd plan");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("CreateStackSet"),
        "{}",
        describe_output(&output)
    );

    let mut reconcile = stacksetd(&env, &desired);
    reconcile.args(["reconcile", "--once"]);
    let output = run(reconcile).await;
    assert_exit(&output, 0, "stacksetd reconcile --once");
    assert!(
        describe_output(&output).contains("converged"),
        "{}",
        describe_output(&output)
    );

    // From AWS (no daemon may answer on this address), every account of the tree.
    let mut status = stacksetd(&env, &desired);
    status.args(["--listen", "127.0.0.1:9", "status", "--tree"]);
    let output = run(status).await;
    assert_exit(&output, 0, "stacksetd status --tree");
    let tree = String::from_utf8_lossy(&output.stdout).into_owned();
    for account in &members {
        assert!(
            tree.lines()
                .any(|l| l.contains("[current]") && l.contains(account.as_str())),
            "member account {account} has a CURRENT instance:\n{tree}"
        );
    }
    assert!(
        tree.lines()
            .any(|l| l.contains("[management]") && l.contains(management)),
        "{tree}"
    );
    assert!(tree.contains("Converged"), "{tree}");

    let stop = run(local_aws(&dir, port, &["stop"])).await;
    assert_exit(&stop, 0, "scripts/local-aws.sh stop");
    assert!(!pid_file.exists(), "{} after stop", pid_file.display());
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("127.0.0.1:{port} is free after stop: {e}"));
    println!("local-aws end to end: {:?}", started.elapsed());
}
