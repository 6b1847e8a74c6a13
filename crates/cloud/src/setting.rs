//! The stack set's settings stacksetd converges, one declaration each (see [`Setting`]).

use std::collections::BTreeMap;

use crate::StackSetSettings;

/// Every setting of a stack set that stacksetd converges, declared once, with what each concern needs of it: its
/// name (the desired state's field, the `spec_drift` metric's `field` label), its spec-drift fingerprint and its
/// part of an UpdateStackSet's OperationId material, all in this file. The one concern elsewhere, the plan's diff
/// (`plan::steps::settings_changes`), matches on it exhaustively, so a new setting does not compile until the plan
/// says what it does with it; a forgotten one used to compile and was then never converged, never reported as
/// drift, or missing from the OperationId.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    Description,
    Template,
    Parameters,
    Capabilities,
    Tags,
    AutoDeployment,
    ManagedExecution,
}

impl Setting {
    /// In the order the plan lists their changes.
    pub const ALL: [Setting; 7] = [
        Setting::Description,
        Setting::Template,
        Setting::Parameters,
        Setting::Capabilities,
        Setting::Tags,
        Setting::AutoDeployment,
        Setting::ManagedExecution,
    ];

    /// Its name in the desired state, in spec drift and in the `spec_drift` metrics' `field` label.
    pub const fn name(self) -> &'static str {
        match self {
            Setting::Description => "description",
            Setting::Template => "template",
            Setting::Parameters => "parameters",
            Setting::Capabilities => "capabilities",
            Setting::Tags => "tags",
            Setting::AutoDeployment => "autoDeployment",
            Setting::ManagedExecution => "managedExecution",
        }
    }

    /// One setting as spec drift compares it; `None` when DescribeStackSet did not report it.
    pub fn fingerprint(self, settings: &StackSetSettings) -> Option<String> {
        let pairs = |map: &BTreeMap<String, String>| {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        Some(match self {
            Setting::Description => format!("{:?}", settings.description.as_deref().unwrap_or("")),
            Setting::Template => format!(
                "sha256:{}",
                &stacksetd_core::input::sha256_hex(settings.template_body.as_bytes())[..12]
            ),
            Setting::Parameters => pairs(&settings.parameters),
            Setting::Tags => pairs(&settings.tags),
            Setting::Capabilities => settings
                .capabilities
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            Setting::AutoDeployment => {
                let auto = settings.auto_deployment.as_ref()?;
                format!(
                    "enabled={},retainStacksOnAccountRemoval={}",
                    auto.enabled, auto.retain_stacks_on_account_removal
                )
            }
            Setting::ManagedExecution => format!("active={}", settings.managed_execution?),
        })
    }

    /// One setting's part of an UpdateStackSet's OperationId material: its key and value, in the shape the ids were
    /// first computed from (they must not move: `controller::tests` pins them).
    pub fn id_field(
        self,
        settings: &StackSetSettings,
        keep_template: bool,
    ) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        match self {
            Setting::Description => ("description", json!(settings.description)),
            Setting::Template => (
                "template_body",
                json!((!keep_template).then_some(&settings.template_body)),
            ),
            Setting::Parameters => (
                "parameters",
                settings
                    .parameters
                    .iter()
                    .map(|(key, v)| json!({ "key": key, "value": (!keep_template).then_some(v) }))
                    .collect(),
            ),
            Setting::Capabilities => ("capabilities", json!(settings.capabilities)),
            Setting::Tags => ("tags", json!(settings.tags)),
            Setting::AutoDeployment => ("auto_deployment", json!(settings.auto_deployment)),
            Setting::ManagedExecution => ("managed_execution", json!(settings.managed_execution)),
        }
    }
}
