//! The `stacksetd` command line. Library errors are typed; anyhow only lives here, at the edge.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use stacksetd::cli::output::{self, Planned, ProgressPrinter};
use stacksetd::cli::{review, status_view};
use stacksetd::cloud::aws::AwsCloud;
use stacksetd::cloud::{Cloud, Connector};
use stacksetd::controller::credentials::Contexts;
use stacksetd::controller::{self, Context};
use stacksetd::desired::{self, DesiredState, PolicyLevel};
use stacksetd::settings::{LogFormat, Overrides, Settings};
use stacksetd::{daemon, demo, telemetry};

#[derive(Parser)]
#[command(
    name = "stacksetd",
    version = stacksetd::build::LONG_VERSION,
    about = "Keeps a vendor-access CloudFormation StackSet converged to a desired state"
)]
struct Cli {
    /// Desired-state file (settings key desired_state).
    #[arg(long, global = true, value_name = "FILE")]
    desired: Option<PathBuf>,
    /// Daemon settings file (default /etc/stacksetd/stacksetd.yaml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP listen address (settings key listen).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Log format (settings key log.format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log level or filter (settings key log.level).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: reconcile every deployment continuously.
    Run,
    /// Reconcile once: converge every deployment, then exit (0 converged, 1 not).
    Reconcile {
        /// One pass to convergence, then exit (the only mode; the daemon is `run`).
        #[arg(long, required = true)]
        once: bool,
        /// Do not wait for deletions held by deletion_delay: exit 1 naming the pending step instead.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show what a pass would change; writes nothing.
    Plan {
        /// Exit 0 with no changes, 2 with changes pending, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
    /// Check desired-state files offline; with --config, the daemon's settings too (exit 0 valid, 1 not).
    Validate {
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show the observed state of every deployment.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
        /// Every account in the organization's tree, coloured by its state (plain when piped).
        #[arg(long, conflicts_with = "output")]
        tree: bool,
        /// With --tree: only accounts in these states (comma-separated: failed, missing, access-failed,
        /// outdated, current, inactive, excluded, management, outside).
        #[arg(long, requires = "tree", value_parser = parse_tree_states)]
        state: Option<TreeStates>,
    },
    /// Staged rollout (spec.rollout): let a verified, baked version reach the rest of the instances
    /// (`promote: Manual`), or with --retry re-apply a halted version to the canary.
    Promote {
        /// The deployment (metadata.name).
        #[arg(value_name = "NAME")]
        name: String,
        /// Re-apply the halted version to the canary (its verification and bake start again).
        #[arg(long)]
        retry: bool,
    },
    /// Staged rollouts (spec.rollout): where each stands.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Review templates offline with the guard: what a template can do, and how a new version compares.
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// Exit 0 when the daemon at the `listen` address answers /healthz (a container HEALTHCHECK without curl).
    Health,
    /// Print a shell completion script (e.g. `stacksetd completions bash > ~/.local/share/bash-completion/completions/stacksetd`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff (e.g. `stacksetd man > ~/.local/share/man/man1/stacksetd.1`).
    Man,
    /// Run against the embedded simulated organization: no AWS account needed.
    Demo {
        /// Simulated seconds per real second (1 to 10000).
        #[arg(long, default_value_t = stacksetd::demo::DEFAULT_SPEED, value_parser = parse_speed)]
        speed: f64,
        /// Run the daemon with its HTTP endpoints and page (on --listen, as `run` does) on the simulated
        /// organization, which keeps changing, until Ctrl-C.
        #[arg(long, conflicts_with = "speed")]
        serve: bool,
    },
}

/// `status --state`: state names, each checked.
#[derive(Debug, Clone)]
struct TreeStates(Vec<stacksetd::accounts::AccountState>);

fn parse_tree_states(text: &str) -> Result<TreeStates, String> {
    stacksetd::cli::tree::parse_states(text).map(TreeStates)
}

/// `demo --speed`: a finite number within the range the simulation's clock supports.
fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    let (min, max) = stacksetd::demo::SPEED_RANGE;
    if !(min..=max).contains(&speed) {
        return Err(format!(
            "{text} is out of range: use {min} to {max} simulated seconds per second"
        ));
    }
    Ok(speed)
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// The rollout's version, phase, canary and bake end (exit 0 none in progress or promoting, 2 waiting, 1
    /// halted or error).
    Status {
        /// The deployment (metadata.name); every deployment with spec.rollout when omitted.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        output: Format,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// What a template can do, resource by resource, and the policy level's check (exit 0 passes, 1 refused).
    Check {
        #[arg(value_name = "FILE|URL")]
        template: String,
        #[command(flatten)]
        judging: Judging,
    },
    /// The guard's judgment of NEW with OLD applied, as the daemon makes it under `updates: Auto` (exit 0 not
    /// widening, 2 widening, 1 refused or error).
    Diff {
        #[arg(value_name = "OLD")]
        old: String,
        #[arg(value_name = "NEW")]
        new: String,
        #[command(flatten)]
        judging: Judging,
    },
}

/// How `template check` and `template diff` judge: the policy level, the parameters, the output.
#[derive(clap::Args)]
struct Judging {
    /// Check against a policy level.
    #[arg(long, value_enum)]
    policy: Option<Level>,
    /// Template parameters, as the deployment's spec.parameters would give them.
    #[arg(long, value_name = "NAME=VALUE", num_args = 1..)]
    parameters: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Level {
    #[value(name = "DataOnly")]
    DataOnly,
    #[value(name = "DataAndScheduling")]
    DataAndScheduling,
}

impl From<Level> for PolicyLevel {
    fn from(l: Level) -> PolicyLevel {
        match l {
            Level::DataOnly => PolicyLevel::DataOnly,
            Level::DataAndScheduling => PolicyLevel::DataAndScheduling,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    exit_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            let causes = stacksetd::error::join_causes(error.chain().map(ToString::to_string));
            // Multi-line messages (every problem of an invalid file, one per line) keep their newlines.
            eprintln!(
                "error: {}",
                stacksetd::cli::output::safe_keeping(&causes, &['\n'])
            );
            ExitCode::from(1)
        }
    }
}

/// `stacksetd demo | head -3`: once the reader is gone, printing fails with a broken pipe, and `println!` panics.
/// Output nobody reads is no error: the process ends there with status 0, as the Unix tools it is piped into
/// expect, instead of a panic message and status 101. Every other panic keeps the default report.
fn exit_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Write generated text to stdout; a reader that went away (`| head`) is no error.
fn print_all(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        desired_state: cli.desired.clone(),
        listen: cli.listen.clone(),
        log_format: cli.log_format,
        log_level: cli.log_level.clone(),
    };
    if let Command::Validate { files } = &cli.command {
        return Ok(validate(files, &cli, &overrides));
    }
    if let Command::Template { command } = &cli.command {
        return template_command(command).await;
    }
    // Generated from the parser's own definition, so they never disagree with it; no settings are read.
    match cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stacksetd", &mut script);
            return print_all(&script);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the manual page")?;
            return print_all(&page);
        }
        _ => {}
    }
    let settings = Settings::load(cli.config.as_deref(), &overrides)?;
    let default_level = match cli.command {
        Command::Run | Command::Demo { serve: true, .. } => settings.log.level.clone(),
        // The story prints what the log would say (warnings once per version, failures where they happen).
        Command::Demo { serve: false, .. } => "error".into(),
        _ => "warn".into(),
    };
    let level = cli.log_level.clone().unwrap_or(default_level);
    telemetry::init(settings.log.format, &level);
    match cli.command {
        Command::Demo { serve: true, .. } => {
            demo::serve::serve(settings.listen, shutdown_signals()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { .. } if cli.listen.is_some() => anyhow::bail!(
            "--listen applies to `stacksetd demo --serve` (the daemon and its page); `demo` alone opens no port"
        ),
        Command::Demo { speed, .. } => demo::run(speed)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Validate { .. }
        | Command::Template { .. }
        | Command::Completions { .. }
        | Command::Man => unreachable!("handled above"),
        // The daemon tolerates an invalid or missing file at start: it reports it and waits for a fix.
        Command::Run => run_daemon(&settings).await,
        Command::Health => Ok(health(settings.listen).await),
        // A running daemon knows more (drift, access checks, history) and costs AWS nothing: ask it first.
        Command::Status {
            output,
            tree,
            ref state,
        } if status_from_daemon(&settings, View::of(output, tree, state)).await? => {
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { .. } if settings.leases.table.is_some() => anyhow::bail!(
            "leases.table is set: the replicas of `stacksetd run` that share that table own these deployments, \
             and `reconcile --once` would act beside them without a lease. Use `stacksetd plan` to see what they \
             will do, or run it with settings that name no lease table"
        ),
        command => {
            let desired = desired::load(&settings.desired_state)?;
            let aws = Arc::new(
                AwsCloud::connect(&settings.aws_settings())
                    .await
                    .context("connecting to AWS")?,
            );
            let mut config = controller::Config::from_settings(&settings);
            config.track_progress = true;
            // A one-shot command has no memory of when a coverage gap appeared, and cannot wait for
            // auto-deployment to fill it: `reconcile --once` repairs every gap it can, and `plan` shows that
            // repair (the daemon keeps `coverage_grace_period` for accounts that just joined).
            config.coverage_grace = std::time::Duration::ZERO;
            let ctx = Arc::new(Context::new(aws.clone() as Arc<dyn Cloud>, config));
            let ctx = Contexts::new(ctx, Some(aws as Arc<dyn Connector>));
            match command {
                Command::Reconcile { no_wait, .. } => {
                    Ok(reconcile_once(&ctx, &desired, !no_wait).await)
                }
                Command::Plan {
                    detailed_exitcode,
                    output,
                } => Ok(plan(&ctx, &desired, detailed_exitcode, output).await),
                Command::Promote { ref name, retry } => promote(&ctx, &desired, name, retry).await,
                Command::Rollout {
                    command: RolloutCommand::Status { ref name, output },
                } => rollout_status(&ctx, &desired, name.as_deref(), output).await,
                Command::Status {
                    output,
                    tree,
                    ref state,
                } => {
                    let doc =
                        status_view::from_aws(&ctx, &desired, settings.access_check_concurrency)
                            .await;
                    Ok(print_status(&doc, View::of(output, tree, state)))
                }
                Command::Run
                | Command::Health
                | Command::Validate { .. }
                | Command::Demo { .. }
                | Command::Template { .. }
                | Command::Completions { .. }
                | Command::Man => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// GET /healthz at the listen address (an unspecified address is asked on loopback).
async fn health(listen: std::net::SocketAddr) -> ExitCode {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(4))
        .no_proxy()
        .build();
    let answer = match client {
        Ok(c) => c.get(format!("http://{addr}/healthz")).send().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!(
                "stacksetd health: http://{addr}/healthz answered {}",
                r.status()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!(
                "stacksetd health: http://{addr}/healthz: {}",
                stacksetd::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}

async fn template_command(command: &TemplateCommand) -> anyhow::Result<ExitCode> {
    let judging = match command {
        TemplateCommand::Check { judging, .. } | TemplateCommand::Diff { judging, .. } => judging,
    };
    let params = review::parameters(&judging.parameters).map_err(anyhow::Error::msg)?;
    let (policy, json) = (
        judging.policy.map(Into::into),
        judging.output == Format::Json,
    );
    let (text, code) = match command {
        TemplateCommand::Check { template, .. } => {
            review::check(&review::load(template).await?, policy, &params, json)
        }
        TemplateCommand::Diff { old, new, .. } => {
            let (old, new) = (review::load(old).await?, review::load(new).await?);
            review::diff(&old, &new, policy, &params, json)
        }
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(ExitCode::from(code))
}

/// `validate [FILE...] [--config SETTINGS]`: the desired-state files and, with --config, the daemon's settings (as
/// `run` would read them: the file, then STACKSETD_* variables and flags), every problem of each at once.
fn validate(files: &[PathBuf], cli: &Cli, overrides: &Overrides) -> ExitCode {
    let files: Vec<PathBuf> = if files.is_empty() {
        cli.desired.iter().cloned().collect()
    } else {
        files.to_vec()
    };
    if files.is_empty() && cli.config.is_none() {
        eprintln!(
            "error: name what to check: a desired-state file (stacksetd validate FILE) or the daemon's settings \
             (stacksetd validate --config FILE)"
        );
        return ExitCode::from(1);
    }
    let mut ok = true;
    if let Some(config) = &cli.config {
        match Settings::load(Some(config), overrides) {
            Ok(_) => println!("{}: valid settings", config.display()),
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    for file in &files {
        match desired::load(file) {
            Ok(state) => println!(
                "{}: valid ({} deployment(s))",
                file.display(),
                state.deployments.len()
            ),
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn reconcile_once(
    contexts: &Contexts,
    desired: &DesiredState,
    wait_for_deletions: bool,
) -> ExitCode {
    let mut all_converged = true;
    for deployment in &desired.deployments {
        let mut printer = ProgressPrinter::new();
        let result = match contexts.for_deployment(deployment).await {
            Ok(ctx) => {
                let mut state = controller::DeploymentState::default();
                controller::converge_until(deployment, &ctx, &mut state, wait_for_deletions, |o| {
                    printer.outcome(deployment.name(), o)
                })
                .await
            }
            Err(e) => Err(e),
        };
        printer.finish();
        match result {
            Ok(outcome) if outcome.is_converged() => {
                if let Some(problem) = outcome.held_back() {
                    all_converged = false;
                    eprintln!("{}: {problem}", deployment.name());
                }
            }
            Ok(_) => all_converged = false,
            Err(e) => {
                all_converged = false;
                eprintln!("{}: {e}", deployment.name());
            }
        }
    }
    if all_converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The deployment named NAME, or an error listing the names there are.
fn named<'a>(desired: &'a DesiredState, name: &str) -> anyhow::Result<&'a desired::Deployment> {
    desired
        .deployments
        .iter()
        .find(|d| d.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = desired.deployments.iter().map(|d| d.name()).collect();
            anyhow::anyhow!(
                "no deployment is named `{name}` in the desired state (there are: {})",
                names.join(", ")
            )
        })
}

/// `stacksetd promote NAME [--retry]`.
async fn promote(
    contexts: &Contexts,
    desired: &DesiredState,
    name: &str,
    retry: bool,
) -> anyhow::Result<ExitCode> {
    let deployment = named(desired, name)?;
    let ctx = contexts.for_deployment(deployment).await?;
    let id = controller::rollout::promote(deployment, &ctx, retry).await?;
    if retry {
        println!(
            "{name}: the halted version is applied to the canary again ({id}); its verification and bake start over"
        );
    } else {
        println!(
            "{name}: promoted ({id}); the rest of the instances get the version once the bake has ended"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `stacksetd rollout status [NAME]`: exit 0 when no rollout waits, 2 when one does, 1 when one halted.
async fn rollout_status(
    contexts: &Contexts,
    desired: &DesiredState,
    name: Option<&str>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let chosen: Vec<&desired::Deployment> = match name {
        Some(name) => vec![named(desired, name)?],
        None => desired
            .deployments
            .iter()
            .filter(|d| d.spec.rollout.is_some())
            .collect(),
    };
    // The worst: 2 halted, 1 waiting, 0 neither.
    let mut worst = 0u8;
    let mut doc = serde_json::Map::new();
    let mut text = String::new();
    for deployment in chosen {
        let ctx = contexts.for_deployment(deployment).await?;
        let (_, report) = controller::dry_run(deployment, &ctx, &mut Default::default()).await?;
        let phase = report.rollout.as_ref().map(|r| r.phase);
        worst = worst.max(match phase {
            Some(controller::rollout::Phase::Halted) => 2,
            None | Some(controller::rollout::Phase::Promoting) => 0,
            Some(_) => 1,
        });
        text.push_str(&format!("deployment {}:\n", deployment.name()));
        match &report.rollout {
            Some(rollout) => text.push_str(&output::rollout_text(rollout)),
            None if deployment.spec.rollout.is_none() => {
                text.push_str("  no spec.rollout: versions reach every instance at once\n")
            }
            None => text.push_str("  no rollout in progress\n"),
        }
        doc.insert(
            deployment.name().to_string(),
            serde_json::to_value(&report.rollout).unwrap_or_default(),
        );
    }
    match format {
        Format::Text => print!("{text}"),
        Format::Json => println!("{}", serde_json::Value::Object(doc)),
    }
    Ok(ExitCode::from(match worst {
        2 => 1,
        1 => 2,
        _ => 0,
    }))
}

async fn observe_all<'a>(contexts: &Contexts, desired: &'a DesiredState) -> Vec<Planned<'a>> {
    let mut out = Vec::new();
    for deployment in &desired.deployments {
        let result = match contexts.for_deployment(deployment).await {
            Ok(ctx) => controller::dry_run(deployment, &ctx, &mut Default::default()).await,
            Err(e) => Err(e),
        };
        out.push(Planned { deployment, result });
    }
    out
}

async fn plan(
    contexts: &Contexts,
    desired: &DesiredState,
    detailed: bool,
    format: Format,
) -> ExitCode {
    let planned = observe_all(contexts, desired).await;
    let named: Vec<&desired::Deployment> = desired.deployments.iter().collect();
    // Reported, never acted on; a failed scan is named and does not fail the plan.
    let orphans = controller::ownership::orphans_across(contexts, &named).await;
    match format {
        Format::Text => {
            print!("{}", output::plan_text(&planned));
            print!("{}", output::orphans_text(&orphans));
        }
        Format::Json => {
            let orphans = match orphans {
                Ok(o) => output::OrphanScan::Found(o),
                Err(e) => output::OrphanScan::Failed {
                    error: e.to_string(),
                },
            };
            let doc = output::plan_json(&planned, orphans);
            println!("{}", serde_json::to_string(&doc).unwrap_or_default());
        }
    }
    let failed = planned.iter().any(|p| p.result.is_err());
    let changes = planned
        .iter()
        .any(|p| p.result.as_ref().is_ok_and(|(plan, _)| !plan.is_empty()));
    match (failed, changes, detailed) {
        (true, _, _) => ExitCode::from(1),
        (false, true, true) => ExitCode::from(2),
        _ => ExitCode::SUCCESS,
    }
}

/// `status` from a running daemon's /status; false when none answers at the listen address.
/// How `status` prints.
enum View {
    Table,
    Json,
    Tree(stacksetd::cli::tree::TreeOptions),
}

impl View {
    fn of(output: Format, tree: bool, states: &Option<TreeStates>) -> View {
        match (tree, output) {
            (true, _) => View::Tree(stacksetd::cli::tree::TreeOptions {
                color: std::io::IsTerminal::is_terminal(&std::io::stdout()),
                states: states.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            }),
            (false, Format::Text) => View::Table,
            (false, Format::Json) => View::Json,
        }
    }
}

async fn status_from_daemon(settings: &Settings, view: View) -> Result<bool, stacksetd::Error> {
    match status_view::from_daemon(settings.listen, settings.status_token.as_deref()).await? {
        Some(doc) => {
            print_status(&doc, view);
            Ok(true)
        }
        None => Ok(false),
    }
}

fn print_status(doc: &status_view::StatusDocument, view: View) -> ExitCode {
    match view {
        View::Table => print!("{}", status_view::text(doc)),
        View::Json => println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default()),
        View::Tree(options) => print!("{}", stacksetd::cli::tree::text(doc, &options)),
    }
    if status_view::has_errors(doc) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `stacksetd run`: the daemon until SIGTERM/SIGINT; SIGHUP reloads the desired state.
/// The host name and process id: unique per process on a host, and the pod name under Kubernetes.
fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "stacksetd".into());
    format!("{host}-{}", std::process::id())
}

async fn run_daemon(settings: &Settings) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before anything else: SIGHUP's default action would end the process.
    let mut hangup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let shutdown = shutdown_signals()?;
    let aws = Arc::new(
        AwsCloud::connect(&settings.aws_settings())
            .await
            .context("connecting to AWS")?,
    );
    let cloud: Arc<dyn Cloud> = aws.clone();
    let config = controller::Config::from_settings(settings);
    let options = daemon::Options {
        desired_state: settings.desired_state.clone(),
        listen: settings.listen,
        concurrency: settings.concurrency,
        shutdown_timeout: settings.shutdown_timeout(),
        access_check_interval: settings.access_check_interval.0,
        access_check_concurrency: settings.access_check_concurrency,
        status_token: settings.status_token.clone(),
        allowed_hosts: settings.http_allowed_hosts.clone(),
        max_read_rate: settings.aws.max_read_rate,
    };
    let mut daemon = daemon::Daemon::bind(cloud, config, options)
        .await?
        .with_connector(aws.clone());
    if let Some(table) = &settings.leases.table {
        let client = aws
            .dynamodb_client()
            .context("the lease table needs the SDK's configuration")?;
        let replica_id = settings
            .leases
            .replica_id
            .clone()
            .unwrap_or_else(default_replica_id);
        tracing::info!(table, replica = %replica_id, duration = ?settings.leases.duration.0,
            "sharing deployments with other replicas through leases");
        let leases = stacksetd::leases::Leases::new(
            Arc::new(stacksetd::leases::DynamoStore::from_client(client, table)),
            stacksetd::leases::LeaseSettings {
                table: table.clone(),
                duration: settings.leases.duration.0,
                replica_id,
            },
        );
        daemon = daemon.with_leases(leases)?;
    }
    if let Some(url) = &settings.events.queue_url {
        let queue = aws.event_queue(url).context("events.queue_url")?;
        daemon = daemon.with_events(Arc::new(queue));
    }
    let reloader = daemon.reloader();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reloader.reload();
        }
    });
    daemon.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's stop: the first SIGTERM or SIGINT drains, a second one exits at once. Installed when called, so
/// a signal that arrives while the daemon starts is not lost.
fn shutdown_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        // A second signal exits at once.
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            eprintln!("second signal: exiting now");
            std::process::exit(130);
        });
    })
}
