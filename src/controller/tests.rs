//! Unit tests of the controller's pure helpers; the black-box tests on `sim` are in tests/controller_sim.rs.

use super::retry::error_backoff;
use super::*;
use crate::desired::OperationPreferences;

#[test]
fn sequences_continue_past_known_ids() {
    let base = "stacksetd-update-set-abc";
    assert_eq!(next_sequence(base, [].into_iter()), 0);
    let known = [
        "stacksetd-update-set-abc-0",
        "stacksetd-update-set-abc-3",
        "stacksetd-update-set-abcd-9",
        "x",
    ];
    assert_eq!(next_sequence(base, known.into_iter()), 4);
}

#[test]
fn operation_ids_are_deterministic_and_valid() {
    let action = Action::DeleteStackSet;
    let prefs = OperationPreferences::default();
    let a = operation_id_base("Vendor", &action, &prefs);
    assert_eq!(a, operation_id_base("Vendor", &action, &prefs));
    assert_ne!(a, operation_id_base("Other", &action, &prefs));
    let other_prefs = OperationPreferences {
        max_concurrent_count: Some(3),
        ..Default::default()
    };
    assert_ne!(a, operation_id_base("Vendor", &action, &other_prefs));
    let id = format!("{a}-12");
    assert!(id.len() <= 128);
    assert!(id.chars().next().unwrap().is_ascii_alphanumeric());
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
}

#[test]
fn polls_back_off_within_bounds() {
    let config = Config::default();
    assert_eq!(poll_delay(&config, Duration::ZERO), config.poll_min);
    assert_eq!(
        poll_delay(&config, Duration::from_secs(40)),
        Duration::from_secs(10)
    );
    assert_eq!(
        poll_delay(&config, Duration::from_secs(4000)),
        config.poll_max
    );
}

#[test]
fn error_backoff_grows_and_is_capped() {
    let config = Config::default();
    let first = error_backoff(&config, 0);
    assert!(
        first >= Duration::from_millis(1600) && first <= Duration::from_millis(2400),
        "{first:?}"
    );
    let later = error_backoff(&config, 3);
    assert!(
        later >= Duration::from_millis(12800) && later <= Duration::from_millis(19200),
        "{later:?}"
    );
    assert!(error_backoff(&config, 40) <= config.error_backoff_max.mul_f64(1.2));
}

#[test]
fn the_error_policy_backs_off_failures_and_not_a_shutdown() {
    let config = Config::default();
    let refused = Error::ShuttingDown("CreateStackInstances".into());
    assert_eq!(
        error_policy(&config, 5, &refused),
        Duration::ZERO,
        "a shutdown is no failure"
    );
    assert_eq!(refused.metric_label(), "shutting_down");
    let failed = Error::Conflict("x".into());
    let delay = error_policy(&config, 3, &failed);
    assert!(
        delay >= Duration::from_millis(12800) && delay <= Duration::from_millis(19200),
        "{delay:?}"
    );
}

/// The OperationIds of known changes, pinned: an id is derived from the change so that a resend after a crash
/// is refused as a duplicate, and that holds across an upgrade only if the derivation never moves. A refactor
/// that changes one of these would let a restarted, upgraded stacksetd submit a change a second time.
#[test]
fn operation_ids_do_not_move_between_releases() {
    use crate::cloud::{StackSetSettings, Targets};
    use crate::desired::{AccountFilterType, AutoDeployment};
    use std::collections::{BTreeMap, BTreeSet};
    let prefs = OperationPreferences::default();
    let tags = BTreeMap::from([("owner".to_string(), "platform".to_string())]);
    let parameters = BTreeMap::from([("ExternalId".to_string(), "abc".to_string())]);
    let capabilities = BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]);
    let auto = AutoDeployment {
        enabled: true,
        retain_stacks_on_account_removal: false,
        depends_on: Vec::new(),
    };
    let settings = StackSetSettings {
        description: Some("vendor access".into()),
        template_body: "{}".into(),
        parameters,
        capabilities,
        tags,
        auto_deployment: Some(auto),
        managed_execution: Some(true),
    };
    let create = Action::CreateStackSet {
        settings: settings.clone(),
    };
    let update = Action::UpdateStackSet {
        settings: StackSetSettings {
            managed_execution: None,
            ..settings.clone()
        },
        keep_template: false,
        only: None,
    };
    let managed_alone = Action::UpdateStackSet {
        settings: StackSetSettings {
            auto_deployment: None,
            managed_execution: Some(false),
            ..settings
        },
        keep_template: true,
        only: None,
    };
    let targets = Targets {
        organizational_unit_ids: vec!["ou-ab12-aaaaaaaa".into()],
        accounts: vec!["222222222222".into()],
        account_filter_type: AccountFilterType::Intersection,
    };
    let instances = Action::CreateStackInstances {
        targets: targets.clone(),
        regions: vec!["us-east-1".into()],
    };
    let delete = Action::DeleteStackInstances {
        targets,
        regions: vec!["eu-west-1".into()],
        retain_stacks: true,
    };
    let ids: Vec<String> = [create, update, managed_alone, instances, delete]
        .iter()
        .map(|a| operation_id_base("Vendor", a, &prefs))
        .collect();
    // Computed by the release before the settings were one struct (the old Action shape); they must not move.
    assert_eq!(
        ids,
        [
            "stacksetd-create-set-84de163a660226281557",
            "stacksetd-update-set-b52afa6aa8bcd6312c2d",
            "stacksetd-update-set-e81d8bc218d08f361756",
            "stacksetd-create-inst-9769cc4f15c71da57578",
            "stacksetd-delete-inst-c035969e11524d40cfa8",
        ],
        "{ids:#?}"
    );
}

/// Every stack set setting is in spec drift's fingerprint (under its own name, the metric's label) and in an
/// UpdateStackSet's OperationId material (under its own key): a setting is never silently left out of either.
#[test]
fn every_setting_is_fingerprinted_and_part_of_the_operation_id() {
    use crate::cloud::{AutoDeployment as Auto, ObservedStackSet, Setting, StackSetSettings};
    let settings = StackSetSettings {
        description: Some("d".into()),
        template_body: "{}".into(),
        parameters: [("P".to_string(), "v".to_string())].into(),
        capabilities: ["CAPABILITY_IAM".to_string()].into(),
        tags: [("t".to_string(), "v".to_string())].into(),
        auto_deployment: Some(Auto {
            enabled: true,
            retain_stacks_on_account_removal: false,
            depends_on: Vec::new(),
        }),
        managed_execution: Some(true),
    };
    let observed = ObservedStackSet {
        name: "Vendor".into(),
        arn: None,
        status: crate::cloud::StackSetStatus::Active,
        settings: settings.clone(),
        permission_model: None,
        organizational_unit_ids: None,
        regions: None,
        drift: None,
    };
    let fingerprint = settings_fingerprint(&observed);
    // A staged rollout's own tags (stacksetd's record, and `stacksetd promote`'s) are never spec drift.
    let mut rolling = observed.clone();
    for tag in super::rollout::TAGS {
        rolling.settings.tags.insert(tag.into(), "x".into());
    }
    assert_eq!(settings_fingerprint(&rolling), fingerprint);
    let names: Vec<&str> = Setting::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(
        fingerprint
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        names.iter().copied().collect()
    );
    let material = super::operation::id_material(&crate::plan::Action::UpdateStackSet {
        settings,
        keep_template: false,
        only: None,
    });
    let keys = material.as_object().expect("an object").len();
    assert_eq!(
        keys,
        Setting::ALL.len() + 1,
        "one key per setting and the action: {material}"
    );
}
