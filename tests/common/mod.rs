//! Shared harness for the tests that run against moto, the local AWS (tests/moto_harness.rs, tests/e2e_moto.rs).
//!
//! `MotoServer::start()` runs tests/moto/launcher.py (moto plus the patches that bring it closer to AWS, see
//! tests/moto/README.md) on a free loopback port; each test owns its server, so tests never share AWS state.
//! The rest are helpers: SDK clients pointed at the server, an organization builder, desired-state files, the
//! stacksetd binary with a clean AWS environment, and read-only observations through the SDK.
//!
//! A missing virtualenv makes tests fail loudly (never skip): run scripts/setup-moto.sh, or scripts/test.sh.

// Each test crate compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_cloudformation as cfn;
use aws_sdk_cloudformation::config::{Credentials, Region};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_organizations as orgs;

/// The Region every test uses (one Region: a named IAM role collides across Regions of one account, as in AWS).
pub const REGION: &str = "us-east-1";
/// moto's default account: the credentials' account, so the organization's management account.
pub const MANAGEMENT_ACCOUNT_ID: &str = "123456789012";
/// The Organizations service principal that "Enable trusted access" turns on for StackSets.
pub const STACKSETS_SERVICE_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";
/// Credentials the SDK clients sign with. moto accepts any; these look like AWS's documented example key.
pub const TEST_ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const TEST_SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// How long moto may take to import and answer (2 shared cores: be generous).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// A stacksetd command taking longer than this is hung: kill it and fail the test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// The environment variable naming the Python that has moto (scripts/test.sh sets it).
const PYTHON_ENV: &str = "STACKSETD_TEST_PYTHON";
const SETUP_HINT: &str =
    "run scripts/setup-moto.sh (or scripts/test.sh, which runs it) to install moto into ./.venv";

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A running moto server on 127.0.0.1, killed when dropped.
pub struct MotoServer {
    child: Child,
    /// Held open so the launcher sees EOF (and exits) if this process dies without running Drop.
    _stdin: Option<ChildStdin>,
    port: u16,
}

/// Which local AWS the end-to-end tests run against: moto (the default, what CI runs) or fakecloud
/// (`STACKSETD_TEST_BACKEND=fakecloud`, set by `scripts/test.sh --backend fakecloud`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Moto,
    Fakecloud,
}

pub const BACKEND_ENV: &str = "STACKSETD_TEST_BACKEND";
/// The fakecloud binary (default: where scripts/test.sh installs it).
pub const FAKECLOUD_ENV: &str = "STACKSETD_FAKECLOUD";

#[allow(dead_code)]
pub fn backend() -> Backend {
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("fakecloud") => Backend::Fakecloud,
        Ok("moto") | Err(_) => Backend::Moto,
        Ok(other) => panic!("{BACKEND_ENV}={other}: use moto or fakecloud"),
    }
}

/// The virtualenv's Python (`$STACKSETD_TEST_PYTHON` or ./.venv/bin/python), with moto and cfn-lint. Panics
/// (the test fails, never skips) when it is missing.
pub fn python() -> PathBuf {
    let python = match std::env::var_os(PYTHON_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => repo_root().join(".venv/bin/python"),
    };
    if !python.exists() {
        panic!(
            "no Python with moto at {} (${PYTHON_ENV} or ./.venv/bin/python): {SETUP_HINT}",
            python.display()
        );
    }
    python
}

impl MotoServer {
    /// Starts tests/moto/launcher.py with `$STACKSETD_TEST_PYTHON` or ./.venv/bin/python and waits for its
    /// `READY <port>` line. Panics (the test fails) when Python or moto is missing or the server never answers.
    pub fn start() -> MotoServer {
        MotoServer::start_with_env(&[])
    }

    /// fakecloud (`scripts/test.sh --backend fakecloud`): the second emulator, a separate process on 127.0.0.1.
    fn start_fakecloud() -> MotoServer {
        let binary = std::env::var_os(FAKECLOUD_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/fakecloud/0.51.0/bin/fakecloud"));
        if !binary.exists() {
            panic!(
                "no fakecloud at {} (${FAKECLOUD_ENV}): run scripts/test.sh --backend fakecloud, which installs it",
                binary.display()
            );
        }
        // A free port: bound, read, released (fakecloud binds it again at once).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .args([
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--region",
                REGION,
                "--account-id",
                MANAGEMENT_ACCOUNT_ID,
            ])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fakecloud did not listen within {READY_TIMEOUT:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        MotoServer {
            child,
            _stdin: None,
            port,
        }
    }

    /// `start` with an empty fault file in `dir` (`STACKSETD_MOTO_FAULTS`, see tests/moto/patches.py): a test
    /// writes its faults into the file returned while moto runs.
    pub fn start_with_fault_file(dir: &Path) -> (MotoServer, PathBuf) {
        let faults = dir.join("moto-faults");
        std::fs::write(&faults, "").expect("the fault file");
        let server = MotoServer::start_with_env(&[(
            "STACKSETD_MOTO_FAULTS",
            faults.to_str().expect("a UTF-8 path"),
        )]);
        (server, faults)
    }

    /// `start`, with extra environment for the launcher (e.g. `STACKSETD_MOTO_FAULTS`, see tests/moto/patches.py).
    pub fn start_with_env(env: &[(&str, &str)]) -> MotoServer {
        if backend() == Backend::Fakecloud {
            return MotoServer::start_fakecloud();
        }
        let python = python();
        let launcher = repo_root().join("tests/moto/launcher.py");
        let mut child = Command::new(&python)
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .arg(&launcher)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Inherited: moto's errors and tracebacks show up in the test output.
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} {}: {e}; {SETUP_HINT}",
                    python.display(),
                    launcher.display()
                )
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");

        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Forward the first line, then keep draining so the launcher can never block on a full pipe.
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = ready_tx.send(line);
            }
            for _ in lines {}
        });

        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(waited) => {
                let why = match waited {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("did not print READY within {READY_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => {
                        "exited before printing READY".to_string()
                    }
                };
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "moto launcher ({}) {why} (exit status {status:?}; its stderr is above): {SETUP_HINT}",
                    python.display()
                );
            }
        };
        let port = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("moto launcher printed {line:?}, expected `READY <port>`"));
        MotoServer {
            child,
            _stdin: stdin,
            port,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: what AWS_ENDPOINT_URL points at.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Seeds moto's id generator (`POST /moto-api/seed`), so the organization's account, OU and root ids, which
    /// enter request bodies and so the fault proxy's draws, are the same on every run of a seed. fakecloud has no
    /// such switch: there a seed replays the draws only as far as its ids allow.
    #[allow(dead_code)]
    pub fn seed_ids(&self, seed: u64) {
        use std::io::{Read, Write};
        if backend() != Backend::Moto {
            return;
        }
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let request = format!(
            "POST /moto-api/seed?a={} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            seed % (1 << 31)
        );
        stream.write_all(request.as_bytes()).expect("send the seed");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "moto refused the seed: {answer}"
        );
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SDK clients

/// An SDK configuration aimed at the server, with test credentials and Region; nothing read from the host's
/// AWS configuration matters because all three are explicit.
pub async fn sdk_config(server: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(server.endpoint())
        .credentials_provider(Credentials::new(
            TEST_ACCESS_KEY_ID,
            TEST_SECRET_ACCESS_KEY,
            None,
            None,
            "stacksetd-tests",
        ))
        .load()
        .await
}

/// `sdk_config` with the credentials of `role_arn`, assumed from the test credentials: moto then serves the
/// role's account (its multi-account mode), as AWS would.
pub async fn assume_role_config(server: &MotoServer, role_arn: &str) -> aws_config::SdkConfig {
    let base = sdk_config(server).await;
    let issued = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("stacksetd-tests")
        .send()
        .await
        .expect("AssumeRole")
        .credentials
        .expect("AssumeRole returns credentials");
    base.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                issued.access_key_id,
                issued.secret_access_key,
                Some(issued.session_token),
                None,
                "stacksetd-tests-role",
            )),
        )
        .build()
}

pub async fn cfn_client(server: &MotoServer) -> cfn::Client {
    cfn::Client::new(&sdk_config(server).await)
}

pub async fn org_client(server: &MotoServer) -> orgs::Client {
    orgs::Client::new(&sdk_config(server).await)
}

/// The error code of an SDK error (e.g. "StackSetNotFoundException"), for assertions.
pub fn error_code<E: ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or("<no code>").to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Organization

/// One OU to create: `accounts` member accounts directly inside it; `parent` names another OU of the spec
/// (created earlier in the list) or is None for the root.
#[derive(Debug, Clone)]
pub struct OuSpec {
    pub name: String,
    pub parent: Option<String>,
    pub accounts: usize,
}

impl OuSpec {
    pub fn new(name: &str, parent: Option<&str>, accounts: usize) -> OuSpec {
        OuSpec {
            name: name.to_string(),
            parent: parent.map(str::to_string),
            accounts,
        }
    }
}

#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// Member accounts left directly under the root.
    pub root_accounts: usize,
    pub ous: Vec<OuSpec>,
    /// Turn on StackSets' trusted access (the seed's "Enable trusted access" step).
    pub trusted_access: bool,
}

impl OrgSpec {
    /// 30 member accounts in 3 OUs, one of them nested: Engineering (12) > Platform (8), and Finance (10).
    pub fn standard() -> OrgSpec {
        OrgSpec {
            root_accounts: 0,
            ous: vec![
                OuSpec::new("Engineering", None, 12),
                OuSpec::new("Platform", Some("Engineering"), 8),
                OuSpec::new("Finance", None, 10),
            ],
            trusted_access: true,
        }
    }

    pub fn member_count(&self) -> usize {
        self.root_accounts + self.ous.iter().map(|ou| ou.accounts).sum::<usize>()
    }
}

/// The key of `Org::accounts_by_ou` for accounts directly under the root.
pub const ROOT_KEY: &str = "ROOT";

/// What `build_org` created.
#[derive(Debug, Clone)]
pub struct Org {
    pub root_id: String,
    pub management_account_id: String,
    /// OU name -> id.
    pub ou_ids: BTreeMap<String, String>,
    /// OU name -> its parent OU's name (None for the root).
    pub ou_parents: BTreeMap<String, Option<String>>,
    /// OU name (or `ROOT_KEY`) -> the member accounts directly inside it.
    pub accounts_by_ou: BTreeMap<String, BTreeSet<String>>,
}

impl Org {
    pub fn ou(&self, name: &str) -> &str {
        self.ou_ids
            .get(name)
            .unwrap_or_else(|| panic!("no OU named {name} in this org"))
    }

    /// Member accounts in the named OU and every OU below it.
    pub fn accounts_under(&self, name: &str) -> BTreeSet<String> {
        let mut found: BTreeSet<String> =
            self.accounts_by_ou.get(name).cloned().unwrap_or_default();
        for (child, parent) in &self.ou_parents {
            if parent.as_deref() == Some(name) {
                found.extend(self.accounts_under(child));
            }
        }
        found
    }

    /// Every member account (all accounts but the management account).
    pub fn member_accounts(&self) -> BTreeSet<String> {
        self.accounts_by_ou.values().flatten().cloned().collect()
    }
}

/// Creates the organization (FeatureSet ALL; moto's default account 123456789012 is its management account),
/// the OUs and member accounts of `spec`, and turns on trusted access when asked.
pub async fn build_org(server: &MotoServer, spec: &OrgSpec) -> Org {
    build_org_as(&sdk_config(server).await, spec).await
}

/// `build_org` with other credentials: in moto's multi-account mode the organization belongs to their account
/// (an assumed role's, see `assume_role_config`).
pub async fn build_org_as(config: &aws_config::SdkConfig, spec: &OrgSpec) -> Org {
    let client = orgs::Client::new(config);
    let created = client
        .create_organization()
        .feature_set(orgs::types::OrganizationFeatureSet::All)
        .send()
        .await
        .expect("CreateOrganization");
    let management_account_id = created
        .organization()
        .and_then(|o| o.master_account_id())
        .expect("CreateOrganization returns the management account")
        .to_string();
    let roots = client.list_roots().send().await.expect("ListRoots");
    let root_id = roots
        .roots()
        .first()
        .and_then(|r| r.id())
        .expect("the organization has a root")
        .to_string();

    let mut org = Org {
        root_id: root_id.clone(),
        management_account_id,
        ou_ids: BTreeMap::new(),
        ou_parents: BTreeMap::new(),
        accounts_by_ou: BTreeMap::new(),
    };
    for ou in &spec.ous {
        let parent_id = match &ou.parent {
            None => root_id.clone(),
            Some(parent) => org.ou(parent).to_string(),
        };
        let made = client
            .create_organizational_unit()
            .parent_id(&parent_id)
            .name(&ou.name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateOrganizationalUnit {}: {e:?}", ou.name));
        let id = made
            .organizational_unit()
            .and_then(|o| o.id())
            .expect("CreateOrganizationalUnit returns an id")
            .to_string();
        org.ou_ids.insert(ou.name.clone(), id);
        org.ou_parents.insert(ou.name.clone(), ou.parent.clone());
    }

    let placements =
        std::iter::repeat_n((ROOT_KEY.to_string(), root_id.clone()), spec.root_accounts).chain(
            spec.ous.iter().flat_map(|ou| {
                std::iter::repeat_n((ou.name.clone(), org.ou(&ou.name).to_string()), ou.accounts)
            }),
        );
    for (index, (ou_name, ou_id)) in placements.collect::<Vec<_>>().into_iter().enumerate() {
        let name = format!("member-{index:03}");
        let account_id = add_account(&client, &root_id, &ou_id, &name).await;
        org.accounts_by_ou
            .entry(ou_name)
            .or_default()
            .insert(account_id);
    }

    if spec.trusted_access {
        client
            .enable_aws_service_access()
            .service_principal(STACKSETS_SERVICE_PRINCIPAL)
            .send()
            .await
            .expect("EnableAWSServiceAccess for StackSets");
        // The console's "Enable trusted access" is CloudFormation's ActivateOrganizationsAccess (an emulator that
        // starts with it off, as AWS does, needs it).
        cfn::Client::new(config)
            .activate_organizations_access()
            .send()
            .await
            .expect("ActivateOrganizationsAccess");
    }
    org
}

/// Creates a member account (moto creates it at once, under the root) and moves it into `parent_id`.
pub async fn add_account(
    client: &orgs::Client,
    root_id: &str,
    parent_id: &str,
    name: &str,
) -> String {
    let status = client
        .create_account()
        .account_name(name)
        .email(format!("{name}@example.com"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateAccount {name}: {e:?}"));
    let mut current = status
        .create_account_status()
        .cloned()
        .expect("a CreateAccountStatus");
    // AWS (and fakecloud) create accounts asynchronously: poll DescribeCreateAccountStatus until it is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while current.state() == Some(&orgs::types::CreateAccountState::InProgress) {
        assert!(
            std::time::Instant::now() < deadline,
            "CreateAccount {name} still in progress after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let id = current.id().expect("a request id").to_string();
        current = client
            .describe_create_account_status()
            .create_account_request_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeCreateAccountStatus {name}: {e:?}"))
            .create_account_status()
            .cloned()
            .expect("a CreateAccountStatus");
    }
    assert_ne!(
        current.state(),
        Some(&orgs::types::CreateAccountState::Failed),
        "CreateAccount {name}: {current:?}"
    );
    let account_id = current
        .account_id()
        .expect("the new account's id")
        .to_string();
    if parent_id != root_id {
        let moved = client
            .move_account()
            .account_id(&account_id)
            .source_parent_id(root_id)
            .destination_parent_id(parent_id)
            .send()
            .await;
        if let Err(e) = moved {
            // fakecloud 0.51 answers MoveAccount 200 with a body the SDK cannot read ("expected object"); what
            // counts is where the account is now.
            let parents = client
                .list_parents()
                .child_id(&account_id)
                .send()
                .await
                .unwrap_or_else(|e2| {
                    panic!("MoveAccount {account_id} to {parent_id}: {e:?}; ListParents: {e2:?}")
                });
            let now = parents
                .parents()
                .first()
                .and_then(|p| p.id())
                .unwrap_or_default();
            assert_eq!(
                now, parent_id,
                "MoveAccount {account_id} to {parent_id}: {e:?}"
            );
        }
    }
    account_id
}

// ---------------------------------------------------------------------------------------------------------------
// Files

/// config/templates/<name>.json as a file:// URL (absolute path).
pub fn template_url(name: &str) -> String {
    format!("file://{}", template_path(name).display())
}

pub fn template_path(name: &str) -> PathBuf {
    repo_root()
        .join("config/templates")
        .join(format!("{name}.json"))
}

pub fn template_body(name: &str) -> String {
    let path = template_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Writes (or overwrites) `dir/desired.yaml` and returns its path.
pub fn write_desired(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("desired.yaml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// The start of a benchmark binary (benches/ include this module). `cargo test --all-targets` runs bench targets
/// too, without `--bench`: a benchmark is not a test, so there it only says so and returns false. Under
/// `cargo bench` it sets the SDK's test credentials (before any thread exists: the default chain reads them) and
/// returns true.
#[allow(dead_code)]
pub fn bench_start() -> bool {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benchmark not run under cargo test; run it with cargo bench (see scripts/bench.sh)"
        );
        return false;
    }
    // SAFETY: called first thing in main, while the process has one thread.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    }
    true
}

// ---------------------------------------------------------------------------------------------------------------
// The stacksetd binary

/// The stacksetd binary with an environment that reaches only `server`: test credentials, us-east-1, no IMDS,
/// no host AWS profile or config, no colour.
pub fn stacksetd(server: &MotoServer) -> Command {
    stacksetd_with_endpoint(&server.endpoint())
}

/// The stacksetd binary for commands that must not touch AWS at all (e.g. `validate`): the endpoint is a
/// loopback port nothing listens on, so an accidental call fails fast instead of leaving the machine.
pub fn stacksetd_offline() -> Command {
    stacksetd_with_endpoint("http://127.0.0.1:9")
}

fn stacksetd_with_endpoint(endpoint: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stacksetd"));
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("AWS_") || key_str.starts_with("STACKSETD_") {
            command.env_remove(&key);
        }
    }
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("NO_COLOR", "1")
        // Deletions at once, so tests of other things do not wait a minute for them; the tests of
        // deletion_delay itself set it again.
        .env("STACKSETD_DELETION_DELAY", "0s")
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion within `COMMAND_TIMEOUT`, capturing its output; a hung command is killed and
/// fails the test.
pub async fn run(command: Command) -> Output {
    let description = format!("{command:?}");
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("cannot run {description}: {e}"),
        Err(_) => panic!("{description} did not finish within {COMMAND_TIMEOUT:?}"),
    }
}

/// The exit code, panicking with the full output when there is none (killed by a signal).
pub fn exit_code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal:\n{}", describe_output(output)))
}

/// Stdout and stderr, for assertion messages.
pub fn describe_output(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts the exit code, showing the command's output when it differs.
#[track_caller]
pub fn assert_exit(output: &Output, expected: i32, what: &str) {
    let code = exit_code(output);
    assert_eq!(
        code,
        expected,
        "{what}: expected exit {expected}, got {code}\n{}",
        describe_output(output)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Observations through the SDK (read-only)

/// Every stack instance of the stack set as (account, Region), all pages; panics unless every one is CURRENT
/// (OUTDATED or INOPERABLE is not deployed).
pub async fn instances(client: &cfn::Client, stack_set: &str) -> BTreeSet<(String, String)> {
    let items = instance_summaries(client, stack_set).await;
    let unfinished: Vec<String> = items
        .iter()
        .filter(|i| i.status() != Some(&cfn::types::StackInstanceStatus::Current))
        .map(|i| {
            format!(
                "{}/{}: {:?} {:?} {:?}",
                i.account().unwrap_or("?"),
                i.region().unwrap_or("?"),
                i.status(),
                i.stack_instance_status().and_then(|s| s.detailed_status()),
                i.status_reason()
            )
        })
        .collect();
    assert!(
        unfinished.is_empty(),
        "{stack_set}: instances not CURRENT (a deployment is done only when every instance is): {unfinished:#?}"
    );
    pairs_of(&items)
}

/// The stack set's (account, Region) pairs whatever their status: for views taken while it may be mid-operation.
pub async fn instances_any_status(
    client: &cfn::Client,
    stack_set: &str,
) -> BTreeSet<(String, String)> {
    pairs_of(&instance_summaries(client, stack_set).await)
}

/// A stack set's tags, by key.
pub fn stack_set_tags(stack_set: &cfn::types::StackSet) -> BTreeMap<String, String> {
    stack_set
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Each instance of `stack_set` as (account, Status, DetailedStatus).
pub async fn instance_statuses(
    client: &cfn::Client,
    stack_set: &str,
) -> Vec<(String, String, String)> {
    instance_summaries(client, stack_set)
        .await
        .into_iter()
        .map(|i| {
            (
                i.account().unwrap_or_default().to_string(),
                i.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                i.stack_instance_status()
                    .and_then(|s| s.detailed_status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn instance_summaries(
    client: &cfn::Client,
    stack_set: &str,
) -> Vec<cfn::types::StackInstanceSummary> {
    client
        .list_stack_instances()
        .stack_set_name(stack_set)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap_or_else(|e| panic!("ListStackInstances {stack_set}: {e:?}"))
}

fn pairs_of(items: &[cfn::types::StackInstanceSummary]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|i| {
            (
                i.account().expect("instance account").to_string(),
                i.region().expect("instance Region").to_string(),
            )
        })
        .collect()
}

/// The accounts that have an instance of the stack set (any Region).
pub async fn instance_accounts(client: &cfn::Client, stack_set: &str) -> BTreeSet<String> {
    instances(client, stack_set)
        .await
        .into_iter()
        .map(|(account, _)| account)
        .collect()
}

/// DescribeStackSet; None when the stack set does not exist (StackSetNotFoundException).
pub async fn describe_stack_set(
    client: &cfn::Client,
    stack_set: &str,
) -> Option<cfn::types::StackSet> {
    match client
        .describe_stack_set()
        .stack_set_name(stack_set)
        .send()
        .await
    {
        Ok(out) => out.stack_set().cloned(),
        Err(e) if error_code(&e) == "StackSetNotFoundException" => None,
        Err(e) => panic!("DescribeStackSet {stack_set}: {e:?}"),
    }
}

/// Every stack set with this name in ListStackSets, whatever its status (deleted ones included).
pub async fn stack_sets_named(
    client: &cfn::Client,
    stack_set: &str,
) -> Vec<cfn::types::StackSetSummary> {
    let items: Vec<cfn::types::StackSetSummary> = client
        .list_stack_sets()
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("ListStackSets");
    items
        .into_iter()
        .filter(|s| s.stack_set_name() == Some(stack_set))
        .collect()
}

/// ListStackSetOperations, all pages, in the order the endpoint returns them.
/// Wait for an operation the test itself started (as an operator in the console would): AWS, and fakecloud,
/// run it asynchronously; moto has finished it before answering.
pub async fn wait_for_operation(client: &cfn::Client, stack_set: &str, operation_id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let op = client
            .describe_stack_set_operation()
            .stack_set_name(stack_set)
            .operation_id(operation_id)
            .send()
            .await
            .expect("DescribeStackSetOperation");
        let status = op.stack_set_operation().and_then(|o| o.status()).cloned();
        match status {
            Some(cfn::types::StackSetOperationStatus::Succeeded) => return,
            Some(
                cfn::types::StackSetOperationStatus::Running
                | cfn::types::StackSetOperationStatus::Queued,
            )
            | None => {}
            Some(other) => panic!("operation {operation_id} on {stack_set} ended {other:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "operation {operation_id} still {status:?} after 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub async fn operations(
    client: &cfn::Client,
    stack_set: &str,
) -> Vec<cfn::types::StackSetOperationSummary> {
    client
        .list_stack_set_operations()
        .stack_set_name(stack_set)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap_or_else(|e| panic!("ListStackSetOperations {stack_set}: {e:?}"))
}

/// The most recently created operation (DescribeStackSetOperation), or None if there is none. Chosen by
/// CreationTimestamp, not list order, which AWS does not document.
pub async fn latest_operation(
    client: &cfn::Client,
    stack_set: &str,
) -> Option<cfn::types::StackSetOperation> {
    let summaries = operations(client, stack_set).await;
    // On equal timestamps the later entry wins (moto lists in creation order).
    let latest = summaries.iter().enumerate().max_by(|(ia, a), (ib, b)| {
        a.creation_timestamp()
            .map(|t| (t.secs(), t.subsec_nanos()))
            .cmp(&b.creation_timestamp().map(|t| (t.secs(), t.subsec_nanos())))
            .then(ia.cmp(ib))
    })?;
    let id = latest.1.operation_id().expect("operation id");
    let described = client
        .describe_stack_set_operation()
        .stack_set_name(stack_set)
        .operation_id(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStackSetOperation {id}: {e:?}"));
    described.stack_set_operation().cloned()
}

// ---------------------------------------------------------------------------------------------------------------
// The desired-state file of the end-to-end tests

/// The deployment's name and its stack set's, in every end-to-end test.
#[allow(dead_code)]
pub const DEPLOYMENT: &str = "aimably";
#[allow(dead_code)]
pub const STACK_SET: &str = "AimablyDataOnly";

/// The knobs the end-to-end tests turn in the desired-state file; everything else follows the vendor guide's
/// console wizard settings (auto-deployment on, account removal deletes stacks, soft failure tolerance).
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub struct Desired {
    pub description: String,
    /// `ROOT` or OU ids.
    pub ous: Vec<String>,
    pub failure_tolerance_percentage: u32,
    pub max_concurrent_percentage: u32,
    pub ensure: &'static str,
    /// `spec.template.url` (the shipped data-only template by default).
    pub template_url: String,
    /// More spec lines, indented two spaces (e.g. a `rollout:` block), after the rest.
    pub extra: String,
}

#[allow(dead_code)]
impl Desired {
    /// The deployment targeting `ous`, every other knob as the wizard sets it.
    pub fn new(description: &str, ous: Vec<String>) -> Desired {
        Desired {
            description: description.to_string(),
            ous,
            failure_tolerance_percentage: 100,
            max_concurrent_percentage: 100,
            ensure: "Present",
            template_url: template_url("aimably-data-only"),
            extra: String::new(),
        }
    }

    pub fn yaml(&self) -> String {
        let ous = self
            .ous
            .iter()
            .map(|o| format!("\"{o}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: {DEPLOYMENT}
spec:
  stackSetName: {STACK_SET}
  description: "{description}"
  managementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  callAs: SELF
  template:
    url: "{url}"
  parameters:
    ManagementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  capabilities: [CAPABILITY_NAMED_IAM]
  deploymentTargets:
    organizationalUnitIds: [{ous}]
  regions: [{REGION}]
  autoDeployment: {{enabled: true, retainStacksOnAccountRemoval: false}}
  operationPreferences:
    failureTolerancePercentage: {ftp}
    maxConcurrentPercentage: {mcp}
    concurrencyMode: SOFT_FAILURE_TOLERANCE
  ensure: {ensure}
{extra}"#,
            description = self.description,
            url = self.template_url,
            extra = self.extra,
            ftp = self.failure_tolerance_percentage,
            mcp = self.max_concurrent_percentage,
            ensure = self.ensure,
        )
    }
}

/// A deployment document with an account filter and Regions of the test's choosing, and a template whose role has
/// no fixed name (IAM names are global per account, so a named role cannot be in two Regions of one account).
#[allow(dead_code)]
pub fn filtered_yaml(
    dir: &Path,
    ous: &[&str],
    accounts: &[&str],
    filter: &str,
    regions: &[&str],
) -> std::path::PathBuf {
    let mut template: serde_json::Value =
        serde_json::from_str(&template_body("aimably-data-only")).unwrap();
    template["Resources"]["AimablyMemberRole"]["Properties"]
        .as_object_mut()
        .unwrap()
        .remove("RoleName");
    let template_path = dir.join("unnamed-role.json");
    std::fs::write(
        &template_path,
        serde_json::to_string_pretty(&template).unwrap(),
    )
    .unwrap();
    let accounts_line = if accounts.is_empty() {
        String::new()
    } else {
        format!(
            "    accounts: [{}]\n    accountFilterType: {filter}\n",
            accounts
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let yaml = format!(
        r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: {DEPLOYMENT}
spec:
  stackSetName: {STACK_SET}
  managementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  template:
    url: "file://{template}"
  parameters:
    ManagementAccountId: "{MANAGEMENT_ACCOUNT_ID}"
  deploymentTargets:
    organizationalUnitIds: [{ous}]
{accounts_line}  regions: [{regions}]
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    concurrencyMode: SOFT_FAILURE_TOLERANCE
"#,
        template = template_path.display(),
        ous = ous.join(", "),
        regions = regions.join(", "),
    );
    write_desired(dir, &yaml)
}

/// The (account, Region) pairs every DELETE operation not in `seen` touched, by the emulator's results.
#[allow(dead_code)]
pub async fn deleted_since(
    client: &aws_sdk_cloudformation::Client,
    seen: &mut BTreeSet<String>,
) -> BTreeSet<(String, String)> {
    let mut deleted = BTreeSet::new();
    for op in operations(client, STACK_SET).await {
        let id = op.operation_id().expect("operation id").to_string();
        if !seen.insert(id.clone())
            || op.action() != Some(&aws_sdk_cloudformation::types::StackSetOperationAction::Delete)
        {
            continue;
        }
        let results = client
            .list_stack_set_operation_results()
            .stack_set_name(STACK_SET)
            .operation_id(&id)
            .send()
            .await
            .expect("ListStackSetOperationResults");
        deleted.extend(
            results
                .summaries()
                .iter()
                .filter_map(|r| Some((r.account()?.to_string(), r.region()?.to_string()))),
        );
    }
    deleted
}
