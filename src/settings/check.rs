//! Every problem of the settings at once, each named where it was given: FILE:LINE:COLUMN in the settings file,
//! the variable in the environment, the flag on the command line. The layers are checked before config-rs merges
//! them, because its typed deserialization stops at the first problem and names neither file nor line.
//!
//! [`KEYS`] is the one list of settings keys with what each value must be; the defaults, the `Settings` struct
//! and this list are checked against each other by a test, so none can gain a key the others lack.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_norway::Value;

use super::{COUNT_BOUNDS, DURATION_BOUNDS, ENV_PREFIX, STATUS_TOKEN_LENGTH, show};
use crate::input::closest;
use crate::input::locate::{self, DocLayout};

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Path,
    Address,
    /// Bounds in [`DURATION_BOUNDS`].
    Duration,
    /// Bounds in [`COUNT_BOUNDS`].
    Count,
    Bool,
    LogFormat,
    LogLevel,
    Text,
    Token,
    Hosts,
    Endpoint,
    Url,
    Table,
    ReplicaId,
    QueueUrl,
}

/// Every settings key (dotted for the nested ones), with its kind.
pub const KEYS: &[(&str, Kind)] = &[
    ("desired_state", Kind::Path),
    ("listen", Kind::Address),
    ("resync_interval", Kind::Duration),
    ("template_poll_interval", Kind::Duration),
    ("org_scan_interval", Kind::Duration),
    ("instance_relist_interval", Kind::Duration),
    ("coverage_grace_period", Kind::Duration),
    ("deletion_delay", Kind::Duration),
    ("access_check_interval", Kind::Duration),
    ("access_check_concurrency", Kind::Count),
    ("concurrency", Kind::Count),
    ("shutdown_timeout", Kind::Duration),
    ("activate_trusted_access", Kind::Bool),
    ("template_private_networks", Kind::Bool),
    ("status_token", Kind::Token),
    ("http_allowed_hosts", Kind::Hosts),
    ("log.format", Kind::LogFormat),
    ("log.level", Kind::LogLevel),
    ("aws.region", Kind::Text),
    ("aws.endpoint_url", Kind::Endpoint),
    ("aws.max_attempts", Kind::Count),
    ("aws.max_read_rate", Kind::Count),
    ("leases.table", Kind::Table),
    ("leases.duration", Kind::Duration),
    ("leases.replica_id", Kind::ReplicaId),
    ("catalog.base_url", Kind::Url),
    ("events.queue_url", Kind::QueueUrl),
];

/// The sections (mappings) of the settings file.
const SECTIONS: &[&str] = &["log", "aws", "leases", "catalog", "events"];

/// Keys that make a file a desired state, not settings.
const DESIRED_STATE_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];

/// A value as given: parsed YAML from a file, or text from the environment or a flag.
#[derive(Debug, Clone, Copy)]
pub enum Given<'a> {
    Yaml(&'a Value),
    Text(&'a str),
}

/// Every problem of the settings file `text` (read from `path`), as `path:LINE:COLUMN: key: message` lines.
pub fn file_problems(path: &Path, text: &str) -> Vec<String> {
    let at = |pos: locate::Pos| format!("{}:{}:{}", path.display(), pos.line, pos.column);
    let layout = locate::layout(text);
    if !layout.findings.is_empty() {
        return layout
            .findings
            .iter()
            .map(|(_, f)| format!("{}: {}", at(f.pos), f.message))
            .collect();
    }
    let Some(doc) = layout.docs.first() else {
        return Vec::new();
    };
    if layout.docs.len() > 1 {
        return vec![format!(
            "{}: the settings are one YAML document; this file has {} (`---`)",
            at(locate::Pos { line: 1, column: 1 }),
            layout.docs.len()
        )];
    }
    let value: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let root_keys = doc.keys.get("").cloned().unwrap_or_default();
    if root_keys
        .iter()
        .any(|k| DESIRED_STATE_KEYS[..2].contains(&k.as_str()))
    {
        let pos = doc.pos_of(
            root_keys
                .iter()
                .find(|k| DESIRED_STATE_KEYS.contains(&k.as_str()))
                .map_or("", |k| k),
        );
        return vec![format!(
            "{}: this is a desired-state file (apiVersion, kind, spec), not the daemon's settings: give it with \
             --desired {} (or the settings key desired_state); --config takes the settings (listen, log, aws, ...)",
            at(pos),
            path.display()
        )];
    }
    match &value {
        Value::Null => return Vec::new(),
        Value::Mapping(_) => {}
        _ => {
            return vec![format!(
                "{}: the settings are a mapping of keys (listen: ..., log: ...)",
                at(locate::Pos { line: 1, column: 1 })
            )];
        }
    }
    let mut problems = Vec::new();
    walk(&value, "", doc, &mut |key, pos, message| {
        problems.push(format!("{}: {key}: {message}", at(pos)));
    });
    problems
}

/// Visit every key of the mapping at `prefix`: unknown keys, sections that are not mappings, bad values.
fn walk(
    value: &Value,
    prefix: &str,
    doc: &DocLayout,
    report: &mut impl FnMut(&str, locate::Pos, String),
) {
    let Value::Mapping(map) = value else { return };
    for (key, child) in map {
        let Some(name) = key.as_str() else {
            report(prefix, doc.pos_of(prefix), "keys are names".into());
            continue;
        };
        let path = locate::child_path(prefix, name);
        let pos = doc.pos_of(&path);
        if prefix.is_empty() && SECTIONS.contains(&name) {
            match child {
                Value::Mapping(_) => walk(child, &path, doc, report),
                Value::Null => {}
                _ => report(
                    &path,
                    doc.value_pos_of(&path),
                    section_given_a_value(name, child),
                ),
            }
            continue;
        }
        match KEYS.iter().find(|(k, _)| *k == path) {
            Some((_, kind)) => {
                if let Err(message) = check_value(&path, *kind, Given::Yaml(child)) {
                    report(&path, doc.value_pos_of(&path), message);
                }
            }
            None => report(&path, pos, unknown(prefix, name)),
        }
    }
}

/// A section written as a value: most often `log:` then `  format json`, a key that lost its `:`.
fn section_given_a_value(section: &str, value: &Value) -> String {
    if let Value::String(text) = value
        && let Some((key, rest)) = text.split_once(char::is_whitespace)
        && KEYS.iter().any(|(k, _)| *k == format!("{section}.{key}"))
    {
        return format!(
            "`{text}` has no `:` after its key: write `{key}: {}` below `{section}:`",
            rest.trim_start()
        );
    }
    format!(
        "a section: its keys go below it, indented, each as `key: value` (e.g. `{section}:` then `  key: value`)"
    )
}

/// "unknown setting", with the closest key of the same section, or the section a bare key belongs in.
fn unknown(prefix: &str, name: &str) -> String {
    let siblings: Vec<&str> = KEYS
        .iter()
        .filter_map(|(k, _)| {
            let (parent, leaf) = k.rsplit_once('.').unwrap_or(("", k));
            (parent == prefix).then_some(leaf)
        })
        .chain(if prefix.is_empty() {
            SECTIONS.to_vec()
        } else {
            Vec::new()
        })
        .collect();
    if let Some(fix) = closest(name, &siblings) {
        return format!(
            "unknown setting; did you mean `{}`?",
            locate::child_path(prefix, fix)
        );
    }
    if let Some((full, _)) = KEYS
        .iter()
        .find(|(k, _)| k.rsplit_once('.').is_some_and(|(_, leaf)| leaf == name))
    {
        return format!("unknown setting here; did you mean `{full}` (in its section)?");
    }
    format!(
        "unknown setting (the keys{}: {})",
        if prefix.is_empty() {
            String::new()
        } else {
            format!(" of {prefix}")
        },
        siblings.join(", ")
    )
}

/// Every problem of the `STACKSETD_*` variables, as `VARIABLE: key: message` lines.
pub fn env_problems(vars: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(&format!("{ENV_PREFIX}_")) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        match KEYS.iter().find(|(k, _)| *k == key) {
            Some((_, kind)) => {
                if let Err(message) = check_value(&key, *kind, Given::Text(value)) {
                    problems.push(format!("{name}: {key}: {message}"));
                }
            }
            None => {
                let names: Vec<String> = KEYS.iter().map(|(k, _)| env_name(k)).collect();
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match closest(name, &refs) {
                    Some(fix) => format!("; did you mean {fix}?"),
                    None => " (settings keys as STACKSETD_<KEY>, nested with __, e.g. STACKSETD_LOG__LEVEL)".into(),
                };
                problems.push(format!("{name}: not a setting{hint}"));
            }
        }
    }
    problems
}

/// A key's environment variable: `log.level` -> `STACKSETD_LOG__LEVEL`.
pub fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The problem of one value, or none.
pub fn check_value(key: &str, kind: Kind, given: Given<'_>) -> Result<(), String> {
    match kind {
        Kind::Path => text(given).and_then(|t| {
            if t.is_empty() {
                Err("an empty path; give the desired-state file's path".into())
            } else {
                Ok(())
            }
        }),
        Kind::Address => text(given).and_then(|t| {
            t.parse::<SocketAddr>().map(drop).map_err(|_| {
                format!("`{t}` is not an address and port; write e.g. 127.0.0.1:9464 (or 0.0.0.0:9464 in a container)")
            })
        }),
        Kind::Duration => {
            let t = text(given)?;
            let value = humantime::parse_duration(&t)
                .map_err(|e| format!("`{t}` is not a duration ({e}); write e.g. 30s, 5m, 24h"))?;
            let (_, min, max) = DURATION_BOUNDS
                .iter()
                .find(|(k, _, _)| *k == key)
                .expect("every duration key has bounds");
            in_range(value, *min, *max)
        }
        Kind::Count => {
            let value = match given {
                Given::Yaml(Value::Number(n)) => n.as_u64(),
                Given::Yaml(_) => None,
                Given::Text(t) => t.trim().parse::<u64>().ok(),
            }
            .ok_or_else(|| format!("{} is not a whole number", shown(given)))?;
            let (_, min, max) = COUNT_BOUNDS
                .iter()
                .find(|(k, _, _)| *k == key)
                .expect("every count key has bounds");
            if (*min..=*max).contains(&value) {
                Ok(())
            } else {
                Err(format!("{value} is out of range; use {min} to {max}"))
            }
        }
        Kind::Bool => match given {
            Given::Yaml(Value::Bool(_)) => Ok(()),
            Given::Text(t) if matches!(t.trim(), "true" | "false") => Ok(()),
            _ => Err(format!("{} is not true or false", shown(given))),
        },
        Kind::LogFormat => text(given).and_then(|t| match t.as_str() {
            "text" | "json" => Ok(()),
            other => {
                let fix = closest(other, &["text", "json"]).map_or(String::new(), |f| format!("; did you mean `{f}`?"));
                Err(format!("`{other}` is not a log format: use text or json{fix}"))
            }
        }),
        Kind::LogLevel => text(given).and_then(|t| {
            tracing_subscriber::EnvFilter::try_new(&t)
                .map(drop)
                .map_err(|_| format!("`{t}` is not a level or filter (e.g. info, debug, stacksetd=debug)"))
        }),
        Kind::Text => text(given).map(drop),
        Kind::Token => text(given).and_then(|t| {
            let (min, max) = STATUS_TOKEN_LENGTH;
            if (min..=max).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(())
            } else {
                Err(format!(
                    "use {min} to {max} printable ASCII characters without spaces (e.g. `openssl rand -hex 32`)"
                ))
            }
        }),
        Kind::Hosts => {
            let hosts: Vec<String> = match given {
                Given::Yaml(Value::Sequence(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or("give host names as strings".to_string()))
                    .collect::<Result<_, _>>()?,
                Given::Yaml(_) => return Err("a list of host names ([a.example, b.example])".into()),
                Given::Text(t) => comma_list(t),
            };
            hosts.iter().try_for_each(|h| host_name(h))
        }
        Kind::Endpoint => {
            text(given).and_then(|t| crate::cloud::endpoint::endpoint_problem(&t).map_or(Ok(()), Err))
        }
        Kind::Url => text(given).and_then(|t| match url::Url::parse(&t) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => Ok(()),
            Ok(u) => Err(format!("`{t}`: scheme {} is not supported; use https", u.scheme())),
            Err(e) => Err(format!("`{t}` is not a URL: {e}")),
        }),
        Kind::QueueUrl => text(given).and_then(|t| {
            crate::cloud::queue::parse_queue_url(&t).map_err(|e| format!("`{t}`: {e}"))?;
            // Events steer passes: the same rule as aws.endpoint_url (https, or http to this machine).
            crate::cloud::endpoint::endpoint_problem(&t).map_or(Ok(()), Err)
        }),
        Kind::Table => text(given).and_then(|t| {
            let ok = (3..=255).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if ok {
                Ok(())
            } else {
                Err(format!("`{t}` is not a DynamoDB table name (3 to 255 of letters, digits, _ . -)"))
            }
        }),
        Kind::ReplicaId => text(given).and_then(|t| {
            if (1..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
                Ok(())
            } else {
                Err("use 1 to 128 printable characters without spaces or `#`".into())
            }
        }),
    }
}

/// The value as text: a YAML string, or a number or boolean written where text is expected (YAML reads `8080`
/// as a number; the setting takes it as written).
fn text(given: Given<'_>) -> Result<String, String> {
    match given {
        Given::Text(t) => Ok(t.to_string()),
        Given::Yaml(Value::String(s)) => Ok(s.clone()),
        Given::Yaml(Value::Number(n)) => Ok(n.to_string()),
        Given::Yaml(Value::Bool(b)) => Ok(b.to_string()),
        Given::Yaml(Value::Null) => {
            Err("no value; give one, or remove the key for the default".into())
        }
        Given::Yaml(_) => Err("a single value, not a list or mapping".into()),
    }
}

fn shown(given: Given<'_>) -> String {
    match given {
        Given::Text(t) => format!("`{t}`"),
        Given::Yaml(v) => serde_norway::to_string(v)
            .map_or_else(|_| "the value".into(), |s| format!("`{}`", s.trim())),
    }
}

fn in_range(value: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if value < min || value > max {
        Err(format!(
            "{} is out of range; use {} to {}",
            show(value),
            show(min),
            show(max)
        ))
    } else {
        Ok(())
    }
}

fn host_name(host: &str) -> Result<(), String> {
    let name = host.trim_end_matches('.');
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name; give names only (no scheme, port or path), e.g. stacksetd.monitoring.svc"
        ))
    }
}

/// A list setting as the environment gives it: comma-separated, blanks dropped
/// (`STACKSETD_HTTP_ALLOWED_HOSTS=a.svc,b.example`).
pub fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect()
}
