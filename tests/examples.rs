//! The documented examples in config/ stay valid: the desired-state files parse and validate, the settings file
//! loads, and the templates are under CloudFormation's inline limit.

use std::path::Path;

use stacksetd::desired;
use stacksetd::settings::{Overrides, Settings};
use stacksetd::template::{MAX_TEMPLATE_BODY_BYTES, Template};

fn config(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

#[test]
fn example_desired_states_are_valid() {
    for (file, stack_set) in [
        ("aimably-data-only.yaml", "AimablyDataOnly"),
        (
            "aimably-data-and-scheduling.yaml",
            "AimablyDataAndScheduling",
        ),
    ] {
        let state = desired::load(&config(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(state.deployments.len(), 1);
        assert_eq!(state.deployments[0].spec.stack_set_name, stack_set);
        assert_eq!(
            state.deployments[0]
                .spec
                .deployment_targets
                .organizational_unit_ids,
            ["ROOT"]
        );
    }
}

#[test]
fn example_settings_file_loads_and_matches_the_defaults() {
    let from_file = Settings::load_from(
        Some(&config("stacksetd.yaml")),
        &Overrides::default(),
        Vec::new(),
    )
    .unwrap();
    let defaults = Settings::load_from(None, &Overrides::default(), Vec::new()).unwrap();
    assert_eq!(
        from_file, defaults,
        "config/stacksetd.yaml documents the defaults"
    );
}

#[test]
fn example_templates_parse_and_fit_inline() {
    for name in ["aimably-data-only.json", "aimably-data-and-scheduling.json"] {
        let body = std::fs::read_to_string(config("templates").join(name)).unwrap();
        let template = Template::from_body(name, body).unwrap();
        assert!(template.body.len() <= MAX_TEMPLATE_BODY_BYTES);
        assert!(
            template.document["Resources"].is_object(),
            "{name} has Resources"
        );
    }
}

/// ARCHITECTURE.md names only what exists: every `src/...` path, every `dir/{a, b}.rs` group and every
/// "`src/dir/` (`a`, `b`)" list of modules resolves to a file or directory of the crate.
#[test]
fn the_architecture_names_only_modules_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let module_exists = |path: &str| {
        let path = path.trim_end_matches('/');
        let full = if path.starts_with("src/") || path.starts_with("crates/") {
            root.join(path)
        } else {
            root.join("src").join(path)
        };
        full.exists() || full.with_extension("rs").exists()
    };
    let mut checked = 0;
    for line in text.lines() {
        let ticks: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        for token in &ticks {
            if let Some((head, rest)) = token.split_once('{') {
                // `controller/{memory, drift}.rs`
                let (names, tail) = rest.split_once('}').expect("a closed brace group");
                for name in names.split(',') {
                    let path = format!("{head}{}{tail}", name.trim());
                    assert!(
                        module_exists(&path),
                        "ARCHITECTURE.md names {path}, which does not exist"
                    );
                    checked += 1;
                }
            } else if (token.starts_with("src/") || token.starts_with("crates/"))
                && (token.ends_with(".rs") || token.ends_with('/'))
            {
                assert!(
                    module_exists(token),
                    "ARCHITECTURE.md names {token}, which does not exist"
                );
                checked += 1;
                if token.ends_with('/') {
                    // "`src/guard/` (`resolve`, `value`, ...)": the modules listed after a directory.
                    let after = line.split(&format!("`{token}`")).nth(1).unwrap_or_default();
                    if let Some(list) = after.trim_start().strip_prefix('(') {
                        let list = list.split(')').next().unwrap_or_default();
                        for name in list.split(',').map(|n| n.trim().trim_matches('`')) {
                            let name = name.split(':').next().unwrap_or_default().trim();
                            if name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                                && !name.is_empty()
                            {
                                let path = format!("{token}{name}");
                                assert!(
                                    module_exists(&path),
                                    "ARCHITECTURE.md lists {path}, which does not exist"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 40,
        "only {checked} paths checked: the parser missed the tables"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("(ARCHITECTURE.md)"),
        "the README links ARCHITECTURE.md"
    );
}

/// The colour table of docs/operations.md names every account state the page and the tree use, with its meaning.
#[test]
fn the_operations_guide_explains_every_account_state() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    for state in stacksetd::accounts::AccountState::ALL {
        let row = format!("| `{}` |", state.as_str());
        assert!(
            guide.contains(&row),
            "docs/operations.md's state table lacks {row}"
        );
    }
    assert!(
        root.join("docs/page.png").is_file(),
        "the screenshot the README and docs/operations.md show"
    );
}

/// `stacksetd demo | head -3`: once the reader has gone, the demo ends quietly with status 0 (it used to panic
/// on the broken pipe and exit 101).
#[test]
fn the_demo_piped_into_head_exits_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = crate::common::stacksetd_offline()
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("stacksetd demo starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    for _ in 0..3 {
        lines.next().expect("a line").expect("text");
    }
    drop(lines);
    let status =
        crate::daemon_support::process::wait_child(&mut child, std::time::Duration::from_secs(170))
            .expect("the demo ends after its reader went away");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}
