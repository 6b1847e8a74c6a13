//! Daemon settings (not the desired state): built-in defaults < settings file < `STACKSETD_*` environment
//! (nested keys with `__`, e.g. STACKSETD_LOG__FORMAT=json) < command-line flags. Unknown keys are errors, so a
//! typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

pub mod check;

use crate::cloud::aws::AwsSettings;
use crate::error::Error;
use crate::input::HumanDuration;

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The longest `deletion_delay` accepted: a week (a longer one is almost certainly a typo).
pub const MAX_DELETION_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Every duration setting with the range it must be in (inclusive): a zero interval would spin a loop, an
/// absurdly long one is a typo that silently turns a feature off.
pub const DURATION_BOUNDS: &[(&str, Duration, Duration)] = &[
    ("resync_interval", SECOND, DAY),
    ("template_poll_interval", SECOND, DAY),
    ("org_scan_interval", SECOND, DAY),
    ("instance_relist_interval", SECOND, DAY),
    ("coverage_grace_period", Duration::ZERO, MAX_DELETION_DELAY),
    ("deletion_delay", Duration::ZERO, MAX_DELETION_DELAY),
    ("access_check_interval", SECOND, MAX_DELETION_DELAY),
    ("shutdown_timeout", SECOND, HOUR),
    // Shorter leases hand over faster but renew more often (two DynamoDB calls per third of it).
    (
        "leases.duration",
        Duration::from_secs(3),
        Duration::from_secs(600),
    ),
];

/// Every count setting with its range (inclusive).
pub const COUNT_BOUNDS: &[(&str, u64, u64)] = &[
    ("concurrency", 1, 64),
    ("access_check_concurrency", 1, 64),
    ("aws.max_attempts", 1, 20),
    ("aws.max_read_rate", 1, 1000),
];

/// The longest `status_token` accepted is far beyond any real one; the shortest guards against a placeholder.
pub const STATUS_TOKEN_LENGTH: (usize, usize) = (16, 4096);

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_SETTINGS_FILE: &str = "/etc/stacksetd/stacksetd.yaml";
pub const ENV_PREFIX: &str = "STACKSETD";

/// The built-in defaults, in the settings file's own format (so the defaults document the format).
const DEFAULTS: &str = r#"
desired_state: /etc/stacksetd/desired.yaml
listen: 127.0.0.1:9464
resync_interval: 5m
template_poll_interval: 5m
org_scan_interval: 10m
instance_relist_interval: 30m
coverage_grace_period: 15m
deletion_delay: 60s
access_check_interval: 1h
access_check_concurrency: 8
concurrency: 4
shutdown_timeout: 10s
activate_trusted_access: false
template_private_networks: false
log:
  format: text
  level: info
aws:
  max_attempts: 5
  max_read_rate: 5
leases:
  duration: 30s
catalog:
  base_url: https://s3-us-west-2.amazonaws.com/com.cloudycosts.cloudformation/
"#;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub desired_state: PathBuf,
    pub listen: SocketAddr,
    pub resync_interval: HumanDuration,
    pub template_poll_interval: HumanDuration,
    pub org_scan_interval: HumanDuration,
    /// Each stack set's instances are listed in full at least this often; between, the cached listing is
    /// refreshed after every operation seen on the stack set.
    pub instance_relist_interval: HumanDuration,
    pub coverage_grace_period: HumanDuration,
    /// Deletions wait until the desired state asking for them has been unchanged this long (`0s`: at once).
    pub deletion_delay: HumanDuration,
    pub access_check_interval: HumanDuration,
    pub access_check_concurrency: usize,
    pub concurrency: usize,
    pub shutdown_timeout: HumanDuration,
    pub activate_trusted_access: bool,
    /// Template URLs may lead into private networks (RFC 1918, 100.64/10, IPv6 unique-local) by a name that
    /// resolves there or by a redirect: for a mirror inside the network. Off, only a URL naming a private address
    /// by IP reaches one.
    pub template_private_networks: bool,
    /// When set, GET /status requires `Authorization: Bearer <token>` (and `stacksetd status` sends it). Give it
    /// through the environment (STACKSETD_STATUS_TOKEN, from a secret) rather than a world-readable file.
    #[serde(default)]
    pub status_token: Option<String>,
    /// Host names (besides IP literals and `localhost`) requests may address the daemon by: a Service's or an
    /// ingress's name. Any other name is refused, so a page of another site cannot read the endpoints by DNS
    /// rebinding.
    #[serde(default)]
    pub http_allowed_hosts: Vec<String>,
    pub log: LogSettings,
    pub aws: AwsSection,
    pub leases: LeasesSection,
    pub catalog: CatalogSection,
    /// An `events:` line with every key under it commented out (as in the documented example) is no queue.
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: EventsSection,
}

/// A section given empty (YAML null) is the section's defaults.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// `events.*`: EventBridge's events through an SQS queue (deploy/events/), so passes follow changes in seconds
/// and a converged pass costs one call (src/daemon/events.rs). Without `queue_url` the daemon polls, as before.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// The queue's URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`): its Region comes from it.
    #[serde(default)]
    pub queue_url: Option<String>,
}

/// `leases.*`: several replicas share the deployments through per-deployment leases in a DynamoDB table
/// (src/leases/). Without `table` one daemon reconciles every deployment, as before.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesSection {
    #[serde(default)]
    pub table: Option<String>,
    /// A dead replica's deployments are taken over this long after its last renewal.
    pub duration: HumanDuration,
    /// This replica's name among the others (default: the host name and process id). Two live processes with
    /// one id hold nothing: the second waits.
    #[serde(default)]
    pub replica_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint_url: Option<String>,
    pub max_attempts: u32,
    /// CloudFormation reads a second, all deployments together (the daemon's read budget).
    pub max_read_rate: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    pub base_url: String,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub desired_state: Option<PathBuf>,
    pub listen: Option<String>,
    pub log_format: Option<LogFormat>,
    pub log_level: Option<String>,
}

impl Settings {
    /// Layer defaults, the settings file, the environment and the flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, Error> {
        Self::load_from(file, overrides, std::env::vars())
    }

    /// As `load`, with the environment given (tests).
    pub fn load_from(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, Error> {
        let file = match file {
            Some(path) if !path.exists() => {
                return Err(Error::Settings(format!(
                    "settings file {} does not exist (--config names the daemon's settings file; leave it out for \
                     the defaults)",
                    path.display()
                )));
            }
            Some(path) => Some(path),
            None => Some(Path::new(DEFAULT_SETTINGS_FILE)).filter(|p| p.exists()),
        };
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        // Every problem of every layer at once, each where it was given; config-rs below only merges.
        let mut problems = Vec::new();
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Yaml));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            problems.extend(check::file_problems(path, &text));
            builder = builder.add_source(File::from_str(&text, FileFormat::Yaml));
        }
        problems.extend(check::env_problems(&env));
        problems.extend(flag_problems(overrides));
        if !problems.is_empty() {
            return Err(Error::Settings(format!(
                "{} problem(s):\n  {}",
                problems.len(),
                problems.join("\n  ")
            )));
        }
        // config-rs uses the separator between prefix and key too unless told otherwise: without
        // prefix_separator("_"), STACKSETD_LOG__FORMAT would have to be written STACKSETD__LOG__FORMAT.
        let mut env: std::collections::HashMap<String, String> = env.into_iter().collect();
        // The one list setting, comma-separated in the environment (STACKSETD_HTTP_ALLOWED_HOSTS=a.svc,b.example):
        // read here, since config-rs splits lists only when it also guesses every other value's type.
        let allowed_hosts = env
            .remove(&format!("{ENV_PREFIX}_HTTP_ALLOWED_HOSTS"))
            .map(|v| check::comma_list(&v));
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        if let Some(hosts) = allowed_hosts {
            builder = builder
                .set_override("http_allowed_hosts", hosts)
                .map_err(|e| Error::Settings(e.to_string()))?;
        }
        let set = |b: config::ConfigBuilder<_>, key: &str, value: Option<String>| match value {
            Some(v) => b.set_override(key, v),
            None => Ok(b),
        };
        let builder = set(
            builder,
            "desired_state",
            overrides
                .desired_state
                .as_ref()
                .map(|p| p.display().to_string()),
        )
        .and_then(|b| set(b, "listen", overrides.listen.clone()))
        .and_then(|b| {
            set(
                b,
                "log.format",
                overrides
                    .log_format
                    .map(|f| if f == LogFormat::Json { "json" } else { "text" }.into()),
            )
        })
        .and_then(|b| set(b, "log.level", overrides.log_level.clone()))
        .map_err(|e| Error::Settings(e.to_string()))?;
        let config = builder
            .build()
            .map_err(|e| Error::Settings(e.to_string()))?;
        let settings: Settings = config
            .try_deserialize()
            .map_err(|e| Error::Settings(explain(e)))?;
        Ok(settings)
    }

    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws.region.clone(),
            endpoint_url: self.aws.endpoint_url.clone(),
            max_attempts: self.aws.max_attempts,
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.0
    }
}

/// The problems of the values given as flags, each named by its flag.
fn flag_problems(overrides: &Overrides) -> Vec<String> {
    let flags = [
        ("--listen", "listen", overrides.listen.clone()),
        ("--log-level", "log.level", overrides.log_level.clone()),
    ];
    flags
        .into_iter()
        .filter_map(|(flag, key, value)| {
            let value = value?;
            let kind = check::KEYS.iter().find(|(k, _)| *k == key)?.1;
            check::check_value(key, kind, check::Given::Text(&value))
                .err()
                .map(|message| format!("{flag}: {message}"))
        })
        .collect()
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

pub use crate::cloud::endpoint::{check_endpoint, check_endpoint_named, is_loopback};

/// config-rs names the key in most messages; make the environment spelling visible too.
fn explain(error: config::ConfigError) -> String {
    let text = error.to_string();
    if text.contains("unknown field") {
        format!(
            "{text} (settings keys are snake_case; environment variables are STACKSETD_<KEY>, nested with __)"
        )
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_env_or_flags() {
        let s = Settings::load_from(None, &Overrides::default(), env(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(s.resync_interval.0, Duration::from_secs(300));
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.aws.max_attempts, 5);
        assert_eq!(s.aws.endpoint_url, None);
    }

    #[test]
    fn file_then_env_then_flags_each_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.yaml");
        std::fs::write(&file, "resync_interval: 1m\nlisten: 127.0.0.1:1000\nlog: {format: json}\naws: {region: eu-west-1}\n")
            .unwrap();
        let s = Settings::load_from(Some(&file), &Overrides::default(), env(&[])).unwrap();
        assert_eq!(
            (s.resync_interval.0, s.log.format),
            (Duration::from_secs(60), LogFormat::Json)
        );
        assert_eq!(s.aws.region.as_deref(), Some("eu-west-1"));

        let vars = env(&[
            ("STACKSETD_RESYNC_INTERVAL", "30s"),
            ("STACKSETD_LOG__FORMAT", "text"),
            ("STACKSETD_AWS__ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("OTHER_VAR", "ignored"),
        ]);
        let s = Settings::load_from(Some(&file), &Overrides::default(), vars.clone()).unwrap();
        assert_eq!(s.resync_interval.0, Duration::from_secs(30));
        assert_eq!(s.log.format, LogFormat::Text);
        assert_eq!(s.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            s.listen,
            "127.0.0.1:1000".parse().unwrap(),
            "file value kept where env is silent"
        );

        let flags = Overrides {
            listen: Some("127.0.0.1:2000".into()),
            log_format: Some(LogFormat::Json),
            ..Default::default()
        };
        let s = Settings::load_from(Some(&file), &flags, vars).unwrap();
        assert_eq!(s.listen, "127.0.0.1:2000".parse().unwrap());
        assert_eq!(s.log.format, LogFormat::Json);
    }

    /// Every problem of the file, the environment and the flags in one report, each where it was given (file
    /// line and column, variable, flag), unknown keys with the key meant.
    #[test]
    fn every_problem_of_every_layer_at_once_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.yaml");
        std::fs::write(
            &file,
            "listen: 127.0.0.1:9000\nlgo: {}\nlog:\n  format: xml\n  levle: info\nconcurency: 3\n\
             resync_interval: 5q\nlevel: debug\naws:\n  max_attempts: 0\ndeletion_delay: 8d\n",
        )
        .unwrap();
        let flags = Overrides {
            listen: Some("nope".into()),
            ..Default::default()
        };
        let vars = env(&[
            ("STACKSETD_LOG_FORMAT", "json"),
            ("STACKSETD_CONCURRENCY", "abc"),
            ("STACKSETD_TEMPLATE_PRIVATE_NETWORKS", "yes"),
        ]);
        let err = Settings::load_from(Some(&file), &flags, vars)
            .unwrap_err()
            .to_string();
        let f = file.display();
        for expected in [
            format!("{f}:2:1: lgo: unknown setting; did you mean `log`?"),
            format!("{f}:4:11: log.format: `xml` is not a log format: use text or json"),
            format!("{f}:5:3: log.levle: unknown setting; did you mean `log.level`?"),
            format!("{f}:6:1: concurency: unknown setting; did you mean `concurrency`?"),
            format!("{f}:7:18: resync_interval: `5q` is not a duration"),
            format!("{f}:8:1: level: unknown setting here; did you mean `log.level` (in its section)?"),
            format!("{f}:10:17: aws.max_attempts: 0 is out of range; use 1 to 20"),
            format!("{f}:11:17: deletion_delay: 8days is out of range; use 0s to 7days"),
            "STACKSETD_LOG_FORMAT: not a setting; did you mean STACKSETD_LOG__FORMAT?".into(),
            "STACKSETD_CONCURRENCY: concurrency: `abc` is not a whole number".into(),
            "STACKSETD_TEMPLATE_PRIVATE_NETWORKS: template_private_networks: `yes` is not true or false".into(),
            "--listen: `nope` is not an address and port".into(),
        ] {
            assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
        }
        assert!(err.contains("12 problem(s)"), "{err}");
    }

    #[test]
    fn the_event_queue_url_is_a_queue_url_on_https_or_this_machine() {
        let ok = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[(
                "STACKSETD_EVENTS__QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/111122223333/stacksetd-events",
            )]),
        )
        .unwrap();
        assert_eq!(
            ok.events.queue_url.as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/111122223333/stacksetd-events")
        );
        assert_eq!(
            Settings::load_from(None, &Overrides::default(), env(&[]))
                .unwrap()
                .events,
            EventsSection::default(),
            "no queue by default: polling as before"
        );
        for (bad, says) in [
            (
                "arn:aws:sqs:eu-west-1:111122223333:stacksetd-events",
                "QueueUrl",
            ),
            (
                "https://sqs.eu-west-1.amazonaws.com/stacksetd-events",
                "/<account id>/<queue name>",
            ),
            ("http://sqs.eu-west-1.amazonaws.com/111122223333/q", "https"),
        ] {
            let e = Settings::load_from(
                None,
                &Overrides::default(),
                env(&[("STACKSETD_EVENTS__QUEUE_URL", bad)]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("STACKSETD_EVENTS__QUEUE_URL") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    /// The defaults are valid settings of known keys, and every key of the check's list is a field the settings
    /// load (the struct refuses unknown fields), so the list, the defaults and the struct agree.
    #[test]
    fn the_keys_the_defaults_and_the_struct_agree() {
        assert_eq!(
            check::file_problems(Path::new("defaults"), DEFAULTS),
            Vec::<String>::new()
        );
        let mut file = String::new();
        let mut sections: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (key, kind) in check::KEYS {
            let value = match kind {
                check::Kind::Path => "/etc/stacksetd/d.yaml",
                check::Kind::Address => "127.0.0.1:1",
                check::Kind::Duration if *key == "leases.duration" => "30s",
                check::Kind::Duration => "1m",
                check::Kind::Count => "2",
                check::Kind::Bool => "true",
                check::Kind::LogFormat => "json",
                check::Kind::LogLevel => "debug",
                check::Kind::Text => "eu-west-1",
                check::Kind::Token => "0123456789abcdef0123",
                check::Kind::Hosts => "[a.example]",
                check::Kind::Endpoint => "http://127.0.0.1:5000",
                check::Kind::Url => "https://example.com/",
                check::Kind::Table => "locks",
                check::Kind::ReplicaId => "replica-1",
                check::Kind::QueueUrl => "http://127.0.0.1:5000/123456789012/stacksetd-events",
            };
            match key.split_once('.') {
                Some((section, leaf)) => sections
                    .entry(section)
                    .or_default()
                    .push(format!("  {leaf}: {value}")),
                None => file.push_str(&format!("{key}: {value}\n")),
            }
        }
        for (section, lines) in sections {
            file.push_str(&format!("{section}:\n{}\n", lines.join("\n")));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        std::fs::write(&path, &file).unwrap();
        let s = Settings::load_from(Some(&path), &Overrides::default(), env(&[]))
            .unwrap_or_else(|e| panic!("{e}\n{file}"));
        assert_eq!(s.leases.table.as_deref(), Some("locks"));
        assert_eq!(s.http_allowed_hosts, ["a.example"]);
    }

    /// The desired-state reader names the settings file by these keys; each must be a settings key.
    #[test]
    fn the_desired_state_readers_settings_keys_are_settings_keys() {
        for key in crate::desired::SETTINGS_FILE_KEYS {
            assert!(
                check::KEYS
                    .iter()
                    .any(|(k, _)| k.split('.').next() == Some(*key)),
                "{key}"
            );
        }
    }

    #[test]
    fn a_desired_state_given_as_the_settings_is_named_as_such() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/aimably-data-only.yaml"
        ));
        let err = Settings::load_from(Some(path), &Overrides::default(), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 problem(s)"), "{err}");
        assert!(
            err.contains("this is a desired-state file")
                && err.contains(&format!("--desired {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_key_without_its_colon_is_named_on_its_own_line() {
        for (text, line, fix) in [
            (
                "concurrency: 3\nlisten 127.0.0.1:1\n",
                2,
                "write `listen: 127.0.0.1:1`",
            ),
            (
                "listen 127.0.0.1:1\nconcurrency: 3\n",
                1,
                "write `listen: 127.0.0.1:1`",
            ),
            (
                "log:\n  format json\n",
                2,
                "write `format: json` below `log:`",
            ),
        ] {
            let problems = check::file_problems(Path::new("s.yaml"), text);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with(&format!("s.yaml:{line}:")),
                "{text:?}: {problems:?}"
            );
            assert!(problems[0].contains(fix), "{problems:?}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[("STACKSETD_RESYNC_INTERVALL", "1m")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("STACKSETD_RESYNC_INTERVALL")
                && err.contains("did you mean STACKSETD_RESYNC_INTERVAL?"),
            "{err}"
        );
        let err = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[("STACKSETD_RESYNC_INTERVAL", "soon")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("resync_interval") && err.contains("soon"),
            "{err}"
        );
        let err = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[("STACKSETD_LOG__FORMAT", "xml")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("format") && err.contains("xml"), "{err}");
        let err = Settings::load_from(
            Some(Path::new("/nonexistent/s.yaml")),
            &Overrides::default(),
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/s.yaml"), "{err}");
    }

    #[test]
    fn allowed_hosts_come_from_the_environment_as_a_list_and_must_be_names() {
        let s = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[(
                "STACKSETD_HTTP_ALLOWED_HOSTS",
                "stacksetd.monitoring.svc, status.example.com",
            )]),
        )
        .unwrap();
        assert_eq!(
            s.http_allowed_hosts,
            ["stacksetd.monitoring.svc", "status.example.com"]
        );
        for bad in ["http://x.example", "x.example:9464", "x/y", "a..b"] {
            let err = refused(&[("STACKSETD_HTTP_ALLOWED_HOSTS", bad)]);
            assert!(err.contains("http_allowed_hosts"), "{bad}: {err}");
        }
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        Settings::load_from(None, &Overrides::default(), env(pairs))
            .expect_err(&format!("{pairs:?} must be refused"))
            .to_string()
    }

    #[test]
    fn every_duration_and_count_has_bounds_named_in_the_error() {
        for (key, min, max) in DURATION_BOUNDS {
            let var = format!("STACKSETD_{}", key.to_ascii_uppercase());
            let too_long = show(*max + SECOND);
            let err = refused(&[(&var, &too_long)]);
            assert!(
                err.contains(key) && err.contains("out of range") && err.contains(&show(*max)),
                "{err}"
            );
            if !min.is_zero() {
                let err = refused(&[(&var, "0s")]);
                assert!(err.contains(key) && err.contains(&show(*min)), "{err}");
            }
            let err = refused(&[(&var, "-5s")]);
            assert!(err.contains(key), "{err}");
            let ok = Settings::load_from(None, &Overrides::default(), env(&[(&var, &show(*max))]));
            assert!(ok.is_ok(), "{key} at its maximum: {ok:?}");
        }
        for (key, min, max) in COUNT_BOUNDS {
            let var = format!("STACKSETD_{}", key.replace('.', "__").to_ascii_uppercase());
            for bad in [(min - 1).to_string(), (max + 1).to_string()] {
                let err = refused(&[(&var, &bad)]);
                assert!(
                    err.contains(key) && err.contains(&format!("{min} to {max}")),
                    "{key}={bad}: {err}"
                );
            }
            let err = refused(&[(&var, "-1")]);
            assert!(err.contains(&key.replace("aws.", "")), "{err}");
        }
        // The one that used to panic a background task.
        let err = refused(&[("STACKSETD_TEMPLATE_POLL_INTERVAL", "0s")]);
        assert!(err.contains("template_poll_interval"), "{err}");
    }

    #[test]
    fn the_aws_endpoint_is_https_unless_it_is_this_machine() {
        for ok in [
            "https://cloudformation.example.com",
            "http://127.0.0.1:5000",
            "http://[::1]:5000",
            "http://localhost:4566",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:5000",
            "http://moto.internal",
            "ftp://127.0.0.1",
            "not a url",
            "http://127.0.0.1.evil.test",
        ] {
            let err = check_endpoint(bad).expect_err(bad).to_string();
            assert!(err.contains("aws.endpoint_url"), "{err}");
        }
        let err = refused(&[("STACKSETD_AWS__ENDPOINT_URL", "http://192.168.1.10:4566")]);
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn a_status_token_must_look_like_a_secret() {
        let err = refused(&[("STACKSETD_STATUS_TOKEN", "changeme")]);
        assert!(err.contains("status_token"), "{err}");
        let err = refused(&[("STACKSETD_STATUS_TOKEN", "a token with spaces in it")]);
        assert!(err.contains("status_token"), "{err}");
        let s = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[("STACKSETD_STATUS_TOKEN", "0123456789abcdef0123")]),
        )
        .unwrap();
        assert_eq!(s.status_token.as_deref(), Some("0123456789abcdef0123"));
    }
}
