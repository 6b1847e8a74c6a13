//! The deployment artifacts under deploy/ are part of the product: a unit that systemd rejects or a manifest that
//! cannot start the daemon is a bug like any other. These tests check them by reading them (the systemd unit also
//! through `systemd-analyze`; Docker and Kubernetes are not available to the test suite) and by feeding the
//! settings and desired state they carry through stacksetd's own loaders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use stacksetd::settings::{Overrides, Settings};

/// The bar for `systemd-analyze security`: 0 is fully locked down, 10 is fully exposed.
const MAX_EXPOSURE: f64 = 2.0;
/// Where the unit expects the binary; the tests point a copy at the freshly built one instead.
const INSTALLED_BINARY: &str = "/usr/bin/stacksetd";
/// The HTTP port every deployment artifact uses (the default of the settings key `listen`).
const HTTP_PORT: u16 = 9464;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The documented settings (config/stacksetd.yaml), with `env` on top: what the daemon would run with.
fn settings_with_env(env: &[(String, String)]) -> Result<Settings, stacksetd::error::Error> {
    Settings::load_from(
        Some(&repo("config/stacksetd.yaml")),
        &Overrides::default(),
        env.to_vec(),
    )
}

fn documented_shutdown_timeout() -> Duration {
    settings_with_env(&[])
        .expect("config/stacksetd.yaml loads")
        .shutdown_timeout
        .0
}

// ---------------------------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------------
// Container
// ---------------------------------------------------------------------------------------------------------------

/// One Containerfile instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.split_whitespace().collect::<Vec<_>>().join(" "),
                });
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Containerfile ends in a continuation line"
    );
    out
}

/// The instructions grouped by stage (each starting at its FROM).
fn stages(all: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(
        starts.first() == Some(&0),
        "a Containerfile starts with FROM"
    );
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| &all[start..starts.get(k + 1).copied().unwrap_or(all.len())])
        .collect()
}

#[test]
fn the_containerfile_builds_in_one_stage_and_runs_as_non_root_in_another_with_a_working_healthcheck()
 {
    let all = instructions(&read("deploy/container/Containerfile"));
    let stages = stages(&all);
    assert!(stages.len() >= 2, "a multi-stage build");
    let (build, runtime) = (stages[0], stages[stages.len() - 1]);

    let build_name = build[0]
        .args
        .rsplit_once(" AS ")
        .or_else(|| build[0].args.rsplit_once(" as "))
        .map(|(_, name)| name.to_string())
        .expect("the build stage is named (FROM ... AS build)");
    assert!(
        build[0].args.contains("rust:"),
        "the build stage uses a Rust image"
    );
    assert!(
        build
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked")),
        "the binary is built with the locked dependency versions"
    );
    // Everything the build copies in must exist (a renamed directory would break the image build).
    for copy in build.iter().filter(|i| i.keyword == "COPY") {
        let parts: Vec<&str> = copy.args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                repo(source).exists(),
                "COPY {source}: no such path in the repository"
            );
        }
    }

    let runtime_from = &runtime[0].args;
    assert!(
        !runtime_from.contains("rust:"),
        "the runtime image carries no toolchain"
    );
    assert!(
        runtime.iter().any(|i| i.keyword == "COPY"
            && i.args.starts_with(&format!("--from={build_name} "))
            && i.args.ends_with(INSTALLED_BINARY)),
        "the runtime stage copies the binary from the build stage to {INSTALLED_BINARY}"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "ENTRYPOINT" && i.args.contains(INSTALLED_BINARY))
    );

    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|n| n != 0),
        "USER {user}: a numeric non-root uid, so Kubernetes' runAsNonRoot can verify it"
    );

    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .map(|i| i.args.clone())
        .expect("the runtime stage has a HEALTHCHECK");
    assert!(
        healthcheck.contains(&format!("127.0.0.1:{HTTP_PORT}/healthz\"")),
        "HEALTHCHECK probes /healthz on the port the image listens on: {healthcheck}"
    );
    // The check must be runnable in the runtime image: curl is not in slim or distroless images by default.
    assert!(
        healthcheck.contains("\"curl\""),
        "HEALTHCHECK uses curl: {healthcheck}"
    );
    assert!(
        runtime.iter().any(|i| i.keyword == "RUN"
            && i.args.contains("apt-get install")
            && i.args.split_whitespace().any(|w| w == "curl")),
        "the runtime stage installs curl for its HEALTHCHECK"
    );
    assert!(
        runtime.iter().any(|i| i.keyword == "ENV"
            && i.args
                .contains(&format!("STACKSETD_LISTEN=0.0.0.0:{HTTP_PORT}"))),
        "in a container the daemon must listen beyond loopback"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "EXPOSE" && i.args == HTTP_PORT.to_string())
    );

    let ignored = read(".dockerignore");
    for heavy in ["target", ".git", ".venv"] {
        assert!(
            ignored.lines().any(|l| l.trim() == heavy),
            ".dockerignore keeps {heavy} out of the build context"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------------------------------

/// Every document of every deploy/kubernetes/*.yaml, by kind.
fn manifests() -> BTreeMap<String, Value> {
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut by_kind = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable manifest");
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without kind", file.display()))
                .to_string();
            assert!(
                value["metadata"]["namespace"].is_null(),
                "{}: manifests are namespace-less (kubectl apply -n picks it)",
                file.display()
            );
            assert!(
                by_kind.insert(kind.clone(), value).is_none(),
                "two {kind} manifests"
            );
        }
    }
    by_kind
}

fn kind<'a>(all: &'a BTreeMap<String, Value>, kind: &str) -> &'a Value {
    all.get(kind)
        .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind}"))
}

/// True when every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector is a map");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container(all: &BTreeMap<String, Value>) -> &Value {
    let containers = kind(all, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn container_env(all: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    container(all)["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("env {} has a literal string value", e["name"]));
            (
                e["name"].as_str().expect("env name").to_string(),
                value.to_string(),
            )
        })
        .collect()
}

#[test]
fn the_deployment_runs_one_locked_down_daemon_with_probes_and_resources() {
    let all = manifests();
    let deployment = kind(&all, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1, "one daemon per organization");
    assert_eq!(
        spec["strategy"]["type"], "Recreate",
        "a rollout must never run two daemons at once"
    );
    let pod = &spec["template"]["spec"];
    assert!(selects(
        &spec["selector"]["matchLabels"],
        &spec["template"]["metadata"]["labels"]
    ));

    let c = container(&all);
    let port = c["ports"]
        .as_array()
        .and_then(|p| p.first())
        .expect("a container port");
    assert_eq!(port["containerPort"], HTTP_PORT);
    let port_name = port["name"].as_str().expect("the port is named");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == port_name || get["port"] == HTTP_PORT,
            "{probe} targets the HTTP port"
        );
    }
    for (bound, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        assert!(
            c["resources"][bound][resource].is_string(),
            "resources.{bound}.{resource} is set"
        );
    }

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(
        sc["runAsNonRoot"] == true || pod["securityContext"]["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    assert!(
        sc["seccompProfile"]["type"] == "RuntimeDefault"
            || pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    );

    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    assert!(
        Duration::from_secs(grace) > documented_shutdown_timeout(),
        "the grace period must exceed the drain"
    );

    let account = kind(&all, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:iam::")),
        "the ServiceAccount shows the IRSA role annotation"
    );
}

#[test]
fn the_pod_reads_its_files_from_the_configmap_directory_so_edits_reach_the_file_watch() {
    let all = manifests();
    let pod = &kind(&all, "Deployment")["spec"]["template"]["spec"];
    let config_map = kind(&all, "ConfigMap");
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("a volume from the ConfigMap");
    let mount = container(&all)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert_eq!(mount["mountPath"], "/etc/stacksetd");
    assert_eq!(mount["readOnly"], true);
    assert!(
        mount["subPath"].is_null(),
        "subPath mounts never receive ConfigMap updates"
    );

    // The desired state shipped is the documented example, and it is valid.
    let desired = config_map["data"]["desired.yaml"]
        .as_str()
        .expect("the ConfigMap has desired.yaml");
    assert_eq!(
        desired,
        read("config/aimably-data-only.yaml"),
        "the ConfigMap's desired.yaml is a copy of config/aimably-data-only.yaml"
    );
    let deployments = stacksetd::desired::parse_str(desired, Path::new("desired.yaml"))
        .unwrap_or_else(|e| panic!("the ConfigMap's desired state is invalid: {e}"));
    assert_eq!(deployments.len(), 1);

    // The settings file plus the container's STACKSETD_ variables are what the daemon loads at start.
    let settings_text = config_map["data"]["stacksetd.yaml"]
        .as_str()
        .expect("the ConfigMap has stacksetd.yaml");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let settings_file = dir.path().join("stacksetd.yaml");
    std::fs::write(&settings_file, settings_text).expect("write the settings copy");
    let env: Vec<(String, String)> = container_env(&all)
        .into_iter()
        .filter(|(k, _)| k.starts_with("STACKSETD_"))
        .collect();
    let settings = Settings::load_from(Some(&settings_file), &Overrides::default(), env)
        .unwrap_or_else(|e| panic!("the pod's settings do not load: {e}"));
    assert_eq!(
        settings.listen,
        std::net::SocketAddr::from(([0, 0, 0, 0], HTTP_PORT)),
        "in a pod the daemon must listen beyond loopback for the kubelet and Prometheus"
    );
    assert_eq!(
        settings.desired_state,
        Path::new("/etc/stacksetd/desired.yaml")
    );
}

#[test]
fn service_links_are_off_because_their_variables_would_be_unknown_settings() {
    // Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT, ... for each Service in the namespace; for the
    // Service named stacksetd they look like settings, and unknown settings are refused.
    let all = manifests();
    let service_name = kind(&all, "Service")["metadata"]["name"]
        .as_str()
        .expect("the Service is named")
        .to_uppercase()
        .replace('-', "_");
    let injected = [(
        format!("{service_name}_SERVICE_HOST"),
        "10.0.0.1".to_string(),
    )];
    assert!(
        settings_with_env(&injected).is_err(),
        "a service-link variable is refused as a setting"
    );
    assert_eq!(
        kind(&all, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"],
        false
    );
}

#[test]
fn the_service_and_servicemonitor_expose_metrics_every_30s() {
    let all = manifests();
    let pod_labels = &kind(&all, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let service = kind(&all, "Service");
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service selects the pod"
    );
    let port = service["spec"]["ports"]
        .as_array()
        .and_then(|p| p.first())
        .expect("a Service port");
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["port"], HTTP_PORT);

    let monitor = kind(&all, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(
        selects(
            &monitor["spec"]["selector"]["matchLabels"],
            &service["metadata"]["labels"]
        ),
        "the ServiceMonitor selects the Service"
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["interval"], "30s");
}
