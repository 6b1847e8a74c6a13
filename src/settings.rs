//! Daemon settings (not the desired state): built-in defaults < settings file < `STACKSETD_*` environment
//! (nested keys with `__`, e.g. STACKSETD_LOG__FORMAT=json) < command-line flags. Unknown keys are errors, so a
//! typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::cloud::aws::AwsSettings;
use crate::desired::HumanDuration;
use crate::error::Error;

/// The longest `deletion_delay` accepted: a week (a longer one is almost certainly a typo).
pub const MAX_DELETION_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);

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
coverage_grace_period: 15m
deletion_delay: 60s
access_check_interval: 1h
access_check_concurrency: 8
concurrency: 4
shutdown_timeout: 10s
activate_trusted_access: false
log:
  format: text
  level: info
aws:
  max_attempts: 5
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
    pub coverage_grace_period: HumanDuration,
    /// Deletions wait until the desired state asking for them has been unchanged this long (`0s`: at once).
    pub deletion_delay: HumanDuration,
    pub access_check_interval: HumanDuration,
    pub access_check_concurrency: usize,
    pub concurrency: usize,
    pub shutdown_timeout: HumanDuration,
    pub activate_trusted_access: bool,
    pub log: LogSettings,
    pub aws: AwsSection,
    pub catalog: CatalogSection,
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
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Yaml));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(Error::Settings(format!(
                        "settings file {} does not exist",
                        path.display()
                    )));
                }
                builder = builder.add_source(File::from(path).format(FileFormat::Yaml));
            }
            None if Path::new(DEFAULT_SETTINGS_FILE).exists() => {
                builder = builder.add_source(File::new(DEFAULT_SETTINGS_FILE, FileFormat::Yaml));
            }
            None => {}
        }
        // config-rs uses the separator between prefix and key too unless told otherwise: without
        // prefix_separator("_"), STACKSETD_LOG__FORMAT would have to be written STACKSETD__LOG__FORMAT.
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
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
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), Error> {
        if self.concurrency == 0 {
            return Err(Error::Settings("concurrency must be at least 1".into()));
        }
        if self.access_check_concurrency == 0 {
            return Err(Error::Settings(
                "access_check_concurrency must be at least 1".into(),
            ));
        }
        if self.deletion_delay.0 > MAX_DELETION_DELAY {
            return Err(Error::Settings(format!(
                "deletion_delay {} is longer than {}, the most it may be (0s to 7d)",
                humantime::format_duration(self.deletion_delay.0),
                humantime::format_duration(MAX_DELETION_DELAY)
            )));
        }
        if self.access_check_interval.0.is_zero() {
            return Err(Error::Settings(
                "access_check_interval must be longer than 0s".into(),
            ));
        }
        if self.aws.max_attempts == 0 {
            return Err(Error::Settings(
                "aws.max_attempts must be at least 1".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(Error::Settings(format!(
                "log.level `{}` is not a level or filter (e.g. info, debug, stacksetd=debug)",
                self.log.level
            )));
        }
        Ok(())
    }

    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws.region.clone(),
            endpoint_url: self.aws.endpoint_url.clone(),
            max_attempts: self.aws.max_attempts,
        }
    }

    pub fn controller_config(&self) -> crate::controller::Config {
        crate::controller::Config {
            catalog_base_url: self.catalog.base_url.clone(),
            resync_interval: self.resync_interval.0,
            org_scan_interval: self.org_scan_interval.0,
            template_poll_interval: self.template_poll_interval.0,
            coverage_grace: self.coverage_grace_period.0,
            deletion_delay: self.deletion_delay.0,
            activate_trusted_access: self.activate_trusted_access,
            ..crate::controller::Config::default()
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout.0
    }
}

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

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::load_from(
            None,
            &Overrides::default(),
            env(&[("STACKSETD_RESYNC_INTERVALL", "1m")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("resync_intervall"), "{err}");
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
}
