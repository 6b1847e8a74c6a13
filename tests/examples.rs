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
