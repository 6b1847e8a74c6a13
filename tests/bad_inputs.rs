//! Hand-written bad desired-state files: each is refused with a clear error (the field or the line, and what to
//! write instead) and none panics. Text cases go through `desired::parse_str`, file-level ones (size, encoding,
//! empty files) through `desired::load`, and a few through `stacksetd validate FILE` (exit 1, FILE:LINE:COLUMN).

use std::path::Path;
use std::process::Command;

use stacksetd::desired::{self, Invalid};

const GOOD: &str = r#"apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata: {name: demo}
spec:
  stackSetName: Demo
  managementAccountId: "123456789012"
  template: {policy: DataOnly}
  deploymentTargets: {organizationalUnitIds: [ROOT]}
  regions: [us-east-1]
"#;

/// GOOD with one spec line added (or replacing the line of the same key).
fn with_spec(line: &str) -> String {
    let key = line.trim_start().split(':').next().unwrap_or("");
    let mut out: Vec<&str> = GOOD
        .lines()
        .filter(|l| !l.starts_with(&format!("  {key}:")))
        .collect();
    out.push(line);
    out.join("\n") + "\n"
}

fn parse(text: &str) -> Result<Vec<desired::Deployment>, Invalid> {
    let result = std::panic::catch_unwind(|| desired::parse_str(text, Path::new("bad.yaml")));
    result.unwrap_or_else(|_| panic!("parse_str panicked on:\n{text}"))
}

/// Refused; the whole report contains every `needle`; the first problem is at `line` (0: not checked).
#[track_caller]
fn refused(name: &str, text: &str, line: usize, needles: &[&str]) -> String {
    let err = match parse(text) {
        Ok(_) => panic!("{name}: accepted:\n{text}"),
        Err(err) => err,
    };
    let report = err.to_string();
    println!("{name}:\n  {}", report.replace('\n', "\n  "));
    for needle in needles {
        assert!(
            report.contains(needle),
            "{name}: `{needle}` not in the report:\n{report}"
        );
    }
    if line > 0 {
        assert_eq!(err.problems[0].line, line, "{name}: {report}");
        assert!(err.problems[0].column > 0, "{name}: {report}");
    }
    report
}

#[test]
fn the_base_file_is_valid() {
    parse(GOOD).expect("GOOD is valid");
}

#[test]
fn wrong_types() {
    refused(
        "regions as a string",
        &with_spec("  regions: us-east-1"),
        9,
        &["spec.regions", "expected a sequence"],
    );
    refused(
        "suspend: yes",
        &with_spec("  suspend: yes"),
        10,
        &["spec.suspend", "expected a boolean"],
    );
    refused(
        "tags as a list",
        &with_spec("  tags: [a, b]"),
        10,
        &["spec.tags", "expected a map"],
    );
    refused(
        "a parameter as a list",
        &with_spec("  parameters: {A: [1]}"),
        10,
        &["spec.parameters.A", "expected a string"],
    );
    refused(
        "spec as a number",
        "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {name: x}\nspec: 5\n",
        4,
        &["spec:", "expected a mapping of fields under `spec`"],
    );
    refused(
        "a list as the document",
        "- a\n- b\n",
        1,
        &["expected a mapping", "apiVersion: stacksetd.dev/v1alpha1"],
    );
    refused(
        "plain text",
        "just some text\n",
        1,
        &["expected a mapping", "kind: StackSetDeployment"],
    );
    refused(
        "an unquoted account id",
        &GOOD.replace("\"123456789012\"", "123456789012"),
        6,
        &[
            "spec.managementAccountId",
            "must be quoted",
            "\"012345678901\"",
        ],
    );
    refused(
        "a bad enum value",
        &with_spec("  ensure: present"),
        10,
        &["spec.ensure", "did you mean `Present`?"],
    );
    refused(
        "a bad duration",
        &with_spec("  driftDetection: {interval: 5 parsecs}"),
        10,
        &["`5 parsecs` is not a duration", "write e.g. 30s"],
    );
}

#[test]
fn missing_and_unknown_fields() {
    refused(
        "no stackSetName",
        &GOOD.replace("  stackSetName: Demo\n", ""),
        4,
        &["missing field `stackSetName`; add it under `spec`"],
    );
    refused(
        "no spec",
        "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {name: x}\n",
        0,
        &["missing field `spec`; add it at the top level"],
    );
    refused(
        "a misspelt key",
        &with_spec("  stackSetNmae: Demo"),
        10,
        &["spec.stackSetNmae", "did you mean `stackSetName`?"],
    );
    refused(
        "wrong apiVersion",
        &GOOD.replace("stacksetd.dev/v1alpha1", "v2"),
        1,
        &[
            "unsupported apiVersion `v2`",
            "write `apiVersion: stacksetd.dev/v1alpha1`",
        ],
    );
    refused(
        "an empty regions list",
        &with_spec("  regions: []"),
        9,
        &["spec.regions", "list at least one Region"],
    );
}

#[test]
fn huge_and_negative_numbers() {
    let prefs = |v: &str| {
        with_spec(&format!(
            "  operationPreferences: {{maxConcurrentCount: {v}}}"
        ))
    };
    for (name, value) in [
        ("u64 overflow", "18446744073709551616"),
        ("u32 overflow", "4294967296"),
        (
            "a huge integer",
            "99999999999999999999999999999999999999999",
        ),
        ("1e309", "1e309"),
        ("a negative count", "-3"),
        ("a fraction", "1.5"),
        ("NaN", ".nan"),
    ] {
        refused(
            name,
            &prefs(value),
            10,
            &[
                "spec.operationPreferences.maxConcurrentCount",
                "expected a whole number from 0 to 4294967295",
            ],
        );
    }
}

#[test]
fn unicode() {
    refused(
        "an RTL mark in the name",
        &GOOD.replace("name: demo", "name: \"demo\u{200f}\""),
        3,
        &[
            "metadata.name",
            "not a valid name",
            "lowercase letters, digits and hyphens",
        ],
    );
    refused(
        "an emoji in the stack set name",
        &GOOD.replace("stackSetName: Demo", "stackSetName: Demo🦀"),
        5,
        &["spec.stackSetName", "letters, digits and hyphens"],
    );
    let nul = refused(
        "a NUL byte",
        &GOOD.replace("stackSetName: Demo", "stackSetName: De\0mo"),
        5,
        &["control character U+0000", "remove it"],
    );
    assert!(nul.contains("bad.yaml:5:19:"), "{nul}");
    refused(
        "a bell character",
        &GOOD.replace("name: demo", "name: demo\u{7}"),
        3,
        &["control character U+0007"],
    );
    // A byte order mark starts a stream (Windows editors write one): ignored, not part of the first key.
    parse(&format!("\u{feff}{GOOD}")).expect("a leading BOM is accepted");
    refused(
        "a BOM and an error",
        &format!(
            "\u{feff}{}",
            GOOD.replace("regions: [us-east-1]", "regions: [nowhere-1]")
        ),
        9,
        &["spec.regions[0]", "nowhere-1"],
    );
}

#[test]
fn yaml_structure() {
    refused(
        "a tab in the indentation",
        &GOOD.replace("  regions:", "\tregions:"),
        9,
        &["tabs", "YAML syntax error"],
    );
    refused(
        "a duplicate key",
        &format!("{GOOD}  regions: [eu-west-1]\n"),
        10,
        &[
            "spec.regions",
            "appears twice in the same mapping; keep one",
        ],
    );
    refused(
        "deep nesting",
        &format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000)),
        1,
        &["nesting is deeper than 64 levels", "Flatten it"],
    );
    refused(
        "deep block nesting",
        &(0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>(),
        0,
        &["nesting is deeper than 64 levels"],
    );
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    refused(
        "billion laughs",
        &bomb,
        0,
        &[
            "aliases expand this document to more than 100000 nodes",
            "alias bomb",
        ],
    );
    refused(
        "an unknown alias",
        "a: 1\nb: *nope\n",
        2,
        &["YAML syntax error", "unknown anchor"],
    );
    refused(
        "an unclosed flow sequence",
        &GOOD.replace("regions: [us-east-1]", "regions: [us-east-1"),
        0,
        &["YAML syntax error", "expected ',' or ']'"],
    );
    refused(
        "a value after a value",
        "a: b: c\n",
        1,
        &["YAML syntax error", "mapping values are not allowed"],
    );
    refused("an empty text", "", 1, &["no StackSetDeployment documents"]);
    refused(
        "only comments",
        "# a desired state\n# to be written\n",
        1,
        &[
            "no StackSetDeployment documents",
            "apiVersion: stacksetd.dev/v1alpha1",
        ],
    );
    refused(
        "only document markers",
        "---\n---\n...\n",
        1,
        &["no StackSetDeployment documents"],
    );
    refused(
        "a good document, then a bad second one",
        &format!(
            "{GOOD}---\napiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: second}}\n\
             spec: {{stackSetName: Second, managementAccountId: \"123456789012\", template: {{policy: DataOnly}}, \
             deploymentTargets: {{organizationalUnitIds: [ROOT]}}, regions: [us-east-1], suspend: maybe}}\n"
        ),
        14,
        &["spec.suspend", "expected a boolean"],
    );
}

#[test]
fn a_json_document_is_yaml() {
    let json = r#"{"apiVersion": "stacksetd.dev/v1alpha1", "kind": "StackSetDeployment", "metadata": {"name": "j"},
        "spec": {"stackSetName": "J", "managementAccountId": "123456789012", "template": {"policy": "DataOnly"},
        "deploymentTargets": {"organizationalUnitIds": ["ROOT"]}, "regions": ["us-east-1"]}}"#;
    assert_eq!(parse(json).expect("JSON is YAML").len(), 1);
    refused(
        "JSON with a wrong type",
        &json.replace(
            r#""regions": ["us-east-1"]"#,
            r#""regions": {"us-east-1": 1}"#,
        ),
        3,
        &["spec.regions", "expected a sequence"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Whole files, through `load`.

fn load_err(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    std::fs::write(&path, bytes).unwrap();
    let started = std::time::Instant::now();
    let err = desired::load(&path).expect_err(name).to_string();
    println!(
        "{name} ({:?}):\n  {}",
        started.elapsed(),
        err.replace('\n', "\n  ")
    );
    assert!(
        err.contains("desired.yaml"),
        "{name}: the file is not named: {err}"
    );
    err
}

#[test]
fn files() {
    // 10 MB: refused by size before it is read or parsed.
    let mut big = GOOD.to_string();
    big.push_str(&format!("# {}\n", "x".repeat(10 * 1024 * 1024)));
    let err = load_err("a 10 MB file", big.as_bytes());
    assert!(err.contains("may be at most 1048576 bytes"), "{err}");
    let err = load_err("an empty file", b"");
    assert!(err.contains("no StackSetDeployment documents"), "{err}");
    let err = load_err("only comments", b"# nothing yet\n");
    assert!(err.contains("no StackSetDeployment documents"), "{err}");
    let mut latin1 = GOOD.replace("description", "x").into_bytes();
    let at = latin1.windows(4).position(|w| w == b"Demo").unwrap();
    latin1.insert(at + 1, 0xe9); // "Dmo" with a Latin-1 é
    let err = load_err("a Latin-1 byte", &latin1);
    assert!(
        err.contains("desired.yaml:5:18: the file is not UTF-8: byte 0xe9")
            && err.contains("save the file as UTF-8"),
        "{err}"
    );
    let err = load_err("UTF-16", &[0xff, 0xfe, b'a', 0, b':', 0]);
    assert!(err.contains("not UTF-8"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = desired::load(&dir.path().join("nope.yaml")).expect_err("missing");
    assert!(missing.to_string().contains("nope.yaml"), "{missing}");
    // A BOM-prefixed file is accepted.
    std::fs::write(dir.path().join("bom.yaml"), format!("\u{feff}{GOOD}")).unwrap();
    desired::load(&dir.path().join("bom.yaml")).expect("a BOM-prefixed file loads");
}

#[test]
fn the_validate_command_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, place, needle) in [
        (
            "tab.yaml",
            GOOD.replace("  regions:", "\tregions:").into_bytes(),
            ":9:",
            "tabs",
        ),
        (
            "overflow.yaml",
            with_spec("  operationPreferences: {maxConcurrentCount: 18446744073709551616}")
                .into_bytes(),
            ":10:46:",
            "maxConcurrentCount",
        ),
        (
            "nul.yaml",
            GOOD.replace("Demo", "De\0mo").into_bytes(),
            ":5:19:",
            "U+0000",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_stacksetd"))
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("validate {name}: {:?}\n{stdout}{stderr}", out.status.code());
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}{stderr}");
        let expected = format!("{}{place}", path.display());
        assert!(
            stderr.contains(&expected),
            "{name}: `{expected}` not in stderr: {stderr}"
        );
        assert!(stderr.contains(needle), "{name}: {stderr}");
    }
}

/// Settings and flags out of range are refused before anything runs, naming the key (or flag) and the range;
/// they used to panic (`template_poll_interval: 0s` a background task, `demo --speed 0` the demo).
#[test]
fn out_of_range_settings_and_flags_are_refused_with_the_range() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stacksetd"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STACKSETD_") {
                command.env_remove(&key);
            }
        }
        let out = command
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for speed in ["0", "-1", "NaN", "inf", "1e9"] {
        let (code, stderr) = run(&[], &["demo", &format!("--speed={speed}")]);
        assert_eq!(code, Some(2), "demo --speed {speed}: {stderr}");
        assert!(
            stderr.contains("--speed") && stderr.contains("1 to 10000"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    for (key, value, range) in [
        ("STACKSETD_TEMPLATE_POLL_INTERVAL", "0s", "1s to 1day"),
        ("STACKSETD_RESYNC_INTERVAL", "400days", "1s to 1day"),
        ("STACKSETD_CONCURRENCY", "0", "1 to 64"),
        ("STACKSETD_AWS__MAX_ATTEMPTS", "1000", "1 to 20"),
    ] {
        let (code, stderr) = run(&[(key, value)], &["plan"]);
        assert_eq!(code, Some(1), "{key}={value}: {stderr}");
        let setting = key
            .trim_start_matches("STACKSETD_")
            .replace("__", ".")
            .to_ascii_lowercase();
        assert!(
            stderr.contains(&setting) && stderr.contains(range),
            "{key}={value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A missing file is named once with the OS's reason once (it used to print the OS error twice).
#[test]
fn a_missing_desired_state_file_names_the_os_error_once() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stacksetd"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STACKSETD_") {
            command.env_remove(&key);
        }
    }
    let out = command
        .args(["--desired", "/nonexistent/desired.yaml", "plan"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/desired.yaml"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

/// A key without its `:` is named on its own line with the fix, at any depth; YAML itself notices only on the next
/// line.
#[test]
fn a_key_without_its_colon_is_named_on_its_own_line() {
    for (broken, key_line) in [
        ("  regions: [us-east-1]", "  regions [us-east-1]"),
        ("  stackSetName: Demo", "  stackSetName Demo"),
        (
            "  template: {policy: DataOnly}",
            "  template {policy: DataOnly}",
        ),
    ] {
        let text = GOOD.replace(broken, key_line);
        let line = text.lines().position(|l| l == key_line).unwrap() + 1;
        // The fix as far as the key's value starts: a flow mapping after a lost `:` reads as part of the key.
        let fixed: String = broken
            .trim()
            .chars()
            .take_while(|c| *c != '{' && *c != '[')
            .collect();
        refused(
            key_line,
            &text,
            line,
            &[&format!("has no `:` after its key: write `{fixed}")],
        );
    }
}

/// The daemon's settings file given as the desired state is named as such, in one problem (it was one "unknown
/// field" per key), and so is the reverse, through the command a user runs.
#[test]
fn swapped_files_are_named_as_such() {
    let settings = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/stacksetd.yaml"
    ))
    .unwrap();
    let err = parse(&settings).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.to_string()
            .contains("this is stacksetd's settings file")
            && err.to_string().contains("--config bad.yaml"),
        "{err}"
    );

    let desired = concat!(env!("CARGO_MANIFEST_DIR"), "/config/aimably-data-only.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_stacksetd"))
        .args(["validate", "--config", desired])
        .env_remove("STACKSETD_DELETION_DELAY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("this is a desired-state file")
            && stderr.contains(&format!("--desired {desired}")),
        "{stderr}"
    );
}

/// `validate --config` reads the settings (it used to exit 0 without reading them): every problem at once with
/// FILE:LINE:COLUMN, exit 1; a good file, exit 0.
#[test]
fn validate_config_checks_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "log:\n  format: xml\nconcurency: 3\n").unwrap();
    let run = |path: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stacksetd"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STACKSETD_") {
                command.env_remove(&key);
            }
        }
        let out = command
            .args(["validate", "--config"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run(&bad);
    assert_eq!(code, Some(1), "{stderr}");
    let b = bad.display();
    assert!(
        stderr.contains(&format!("{b}:2:11: log.format: `xml` is not a log format")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{b}:3:1: concurency: unknown setting; did you mean `concurrency`?"
        )),
        "{stderr}"
    );
    let good = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/stacksetd.yaml"
    ));
    let (code, stdout, stderr) = run(good);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid settings"), "{stdout}");
}
