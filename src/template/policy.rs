//! The update decision: may this template version be applied? A pure function of the deployment's template
//! settings, the template the stack set has now (if it exists) and the version fetched, so every combination is
//! tested below.
//!
//! Why this order: a pin and the policy level's allowlist are absolute (they hold even for the first version, when
//! no stack set exists yet, and an allowlist offense is named even if that content is somehow applied already);
//! semantic equality comes next (reformatting alone never triggers anything); size is CloudFormation's inline
//! limit (stacksetd applies exactly the bytes it checked, so there is no S3 fallback); approval (Manual, or a
//! permission widening under Auto) comes last, and an operator's pin of exactly this digest is that approval.

use serde::Serialize;

use super::{MAX_TEMPLATE_BODY_BYTES, Template};
use crate::desired::{TemplateSpec, UpdatePolicy};
use crate::iam::{self, Offense, PolicyDiff};

/// Why a version waits for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HoldReason {
    /// `updates: Manual`: pin the new digest (`sha256:`) to apply it.
    Manual,
    /// `updates: Auto`, but the version grants more than the applied one and `allowPermissionWidening` is false.
    PermissionWidening,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Decision {
    /// The stack set already has this template (semantically).
    UpToDate,
    /// Apply it (create the stack set with it, or update to it). `diff` is empty on creation.
    Apply { diff: PolicyDiff },
    /// Reported, not applied, until the operator approves by pinning its digest.
    Hold {
        reason: HoldReason,
        diff: PolicyDiff,
    },
    /// The policy level's allowlist refuses it outright.
    Refuse { offenses: Vec<Offense> },
    /// A pin names another digest: this content is reported, never applied.
    PinMismatch { pinned: String, found: String },
    /// Over CloudFormation's TemplateBody limit.
    TooLarge { bytes: usize },
}

impl Decision {
    /// The version may be planned with (what the stack set gets, or already has).
    pub fn allows(&self) -> bool {
        matches!(self, Decision::UpToDate | Decision::Apply { .. })
    }

    /// Short, fixed: for /status and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::UpToDate => "up_to_date",
            Decision::Apply { .. } => "apply",
            Decision::Hold {
                reason: HoldReason::Manual,
                ..
            } => "held_manual",
            Decision::Hold {
                reason: HoldReason::PermissionWidening,
                ..
            } => "held_permission_widening",
            Decision::Refuse { .. } => "refused_allowlist",
            Decision::PinMismatch { .. } => "pin_mismatch",
            Decision::TooLarge { .. } => "too_large",
        }
    }

    /// The `reason` of `stacksetd_template_rejected_total`, for versions that are refused (not merely held).
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Decision::Refuse { .. } => Some("allowlist"),
            Decision::PinMismatch { .. } => Some("pin_mismatch"),
            Decision::TooLarge { .. } => Some("too_large"),
            Decision::UpToDate | Decision::Apply { .. } | Decision::Hold { .. } => None,
        }
    }

    /// The IAM diff against the applied template, when one was computed.
    pub fn diff(&self) -> Option<&PolicyDiff> {
        match self {
            Decision::Apply { diff } | Decision::Hold { diff, .. } => Some(diff),
            _ => None,
        }
    }

    /// One sentence for logs, /status and `plan`.
    pub fn message(&self, sha256: &str) -> String {
        let short = &sha256[..sha256.len().min(12)];
        match self {
            Decision::UpToDate => format!("template sha256:{short} is applied"),
            Decision::Apply { .. } => format!("template sha256:{short} is applied by this plan"),
            Decision::Hold {
                reason: HoldReason::Manual,
                ..
            } => format!(
                "template sha256:{short} is available (updates: Manual); set spec.template.sha256: {sha256} to apply it"
            ),
            Decision::Hold {
                reason: HoldReason::PermissionWidening,
                ..
            } => format!(
                "template sha256:{short} widens permissions and is held; review the IAM diff, then set \
                 spec.template.sha256: {sha256} (or allowPermissionWidening: true) to apply it"
            ),
            Decision::Refuse { offenses } => format!(
                "template sha256:{short} is refused: the policy level's allowlist forbids {}",
                offenses
                    .iter()
                    .map(|o| format!("{} at {}", o.action, o.location))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Decision::PinMismatch { pinned, .. } => format!(
                "template sha256:{short} is not the pinned sha256:{}; it is reported, never applied",
                &pinned[..pinned.len().min(12)]
            ),
            Decision::TooLarge { bytes } => format!(
                "template sha256:{short} is {bytes} bytes; stacksetd applies the exact bytes it checked as \
                 TemplateBody, limited to {MAX_TEMPLATE_BODY_BYTES} bytes: refused"
            ),
        }
    }
}

/// Decide whether `candidate` may be applied. `applied` is the stack set's current template (parsed), `None`
/// when the stack set does not exist yet.
pub fn decide(
    spec: &TemplateSpec,
    applied: Option<&serde_json::Value>,
    candidate: &Template,
) -> Decision {
    if let Some(pinned) = &spec.sha256
        && *pinned != candidate.sha256
    {
        return Decision::PinMismatch {
            pinned: pinned.clone(),
            found: candidate.sha256.clone(),
        };
    }
    if let Some(level) = spec.policy {
        let offenses = iam::check_allowlist(level, &candidate.document);
        if !offenses.is_empty() {
            return Decision::Refuse { offenses };
        }
    }
    if applied.is_some_and(|doc| *doc == candidate.document) {
        return Decision::UpToDate;
    }
    if candidate.body.len() > MAX_TEMPLATE_BODY_BYTES {
        return Decision::TooLarge {
            bytes: candidate.body.len(),
        };
    }
    let Some(applied) = applied else {
        // The first version: nothing to approve against; the pin and the allowlist were checked above.
        return Decision::Apply {
            diff: PolicyDiff::default(),
        };
    };
    let diff = iam::diff(applied, &candidate.document);
    // A pin of exactly this digest is the operator's approval.
    let approved = spec.sha256.is_some();
    if approved {
        return Decision::Apply { diff };
    }
    match spec.updates {
        UpdatePolicy::Manual => Decision::Hold {
            reason: HoldReason::Manual,
            diff,
        },
        UpdatePolicy::Auto if diff.is_widening() && !spec.allow_permission_widening => {
            Decision::Hold {
                reason: HoldReason::PermissionWidening,
                diff,
            }
        }
        UpdatePolicy::Auto => Decision::Apply { diff },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::PolicyLevel;

    fn role(actions: &[&str]) -> String {
        serde_json::json!({
            "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{
                "PolicyName": "p",
                "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            }]}}}
        })
        .to_string()
    }

    fn template(actions: &[&str]) -> Template {
        Template::from_body("https://example.com/t.json", role(actions))
            .expect("valid test template")
    }

    fn spec(updates: UpdatePolicy, pin: Option<&Template>, widen: bool) -> TemplateSpec {
        TemplateSpec {
            policy: Some(PolicyLevel::DataOnly),
            url: None,
            sha256: pin.map(|t| t.sha256.clone()),
            updates,
            allow_permission_widening: widen,
        }
    }

    /// (updates, pin, allowPermissionWidening, applied, candidate, expected decision label)
    type Case<'a> = (
        UpdatePolicy,
        Option<&'a Template>,
        bool,
        Option<&'a serde_json::Value>,
        &'a Template,
        &'static str,
    );

    const READ: &[&str] = &["ce:GetCostAndUsage"];
    const MORE_READ: &[&str] = &["ce:GetCostAndUsage", "ec2:DescribeInstances"];
    const LESS: &[&str] = &["ce:GetCostAndUsage"];

    #[test]
    fn every_combination_of_policy_pin_widening_and_change() {
        let v1 = template(MORE_READ);
        let narrower = template(LESS);
        let wider = template(MORE_READ);
        let applied_narrow = narrower.document.clone();
        let applied_wide = v1.document.clone();
        let auto = UpdatePolicy::Auto;
        let manual = UpdatePolicy::Manual;
        let cases: Vec<Case<'_>> = vec![
            // First version: applied whatever the update policy, unless a pin names other content.
            (auto, None, false, None, &v1, "apply"),
            (manual, None, false, None, &v1, "apply"),
            (manual, Some(&v1), false, None, &v1, "apply"),
            (auto, Some(&narrower), false, None, &v1, "pin_mismatch"),
            // Same content: nothing to do.
            (auto, None, false, Some(&applied_wide), &v1, "up_to_date"),
            (manual, None, false, Some(&applied_wide), &v1, "up_to_date"),
            (
                auto,
                Some(&v1),
                false,
                Some(&applied_wide),
                &v1,
                "up_to_date",
            ),
            // A narrowing version.
            (auto, None, false, Some(&applied_wide), &narrower, "apply"),
            (
                manual,
                None,
                false,
                Some(&applied_wide),
                &narrower,
                "held_manual",
            ),
            (
                manual,
                Some(&narrower),
                false,
                Some(&applied_wide),
                &narrower,
                "apply",
            ),
            // A widening version.
            (
                auto,
                None,
                false,
                Some(&applied_narrow),
                &wider,
                "held_permission_widening",
            ),
            (auto, None, true, Some(&applied_narrow), &wider, "apply"),
            (
                auto,
                Some(&wider),
                false,
                Some(&applied_narrow),
                &wider,
                "apply",
            ),
            (
                manual,
                None,
                true,
                Some(&applied_narrow),
                &wider,
                "held_manual",
            ),
            (
                manual,
                Some(&wider),
                false,
                Some(&applied_narrow),
                &wider,
                "apply",
            ),
            // A pin on other content holds against any publication.
            (
                auto,
                Some(&narrower),
                true,
                Some(&applied_narrow),
                &wider,
                "pin_mismatch",
            ),
            (
                manual,
                Some(&narrower),
                false,
                Some(&applied_narrow),
                &wider,
                "pin_mismatch",
            ),
        ];
        for (i, (updates, pin, widen, applied, candidate, want)) in cases.into_iter().enumerate() {
            let got = decide(&spec(updates, pin, widen), applied, candidate);
            assert_eq!(
                got.label(),
                want,
                "case {i}: {updates:?} pin={} widen={widen} -> {got:?}",
                pin.is_some()
            );
            assert_eq!(
                got.allows(),
                want == "apply" || want == "up_to_date",
                "case {i}"
            );
        }
    }

    #[test]
    fn a_held_widening_carries_its_diff_and_names_the_digest() {
        let applied = template(READ);
        let wider = template(MORE_READ);
        let got = decide(
            &spec(UpdatePolicy::Auto, None, false),
            Some(&applied.document),
            &wider,
        );
        let diff = got.diff().expect("a hold carries its diff");
        assert!(
            diff.added_actions.contains("ec2:DescribeInstances"),
            "{diff:?}"
        );
        assert!(got.message(&wider.sha256).contains(&wider.sha256));
        assert_eq!(got.rejection(), None);
    }

    #[test]
    fn the_allowlist_refuses_even_the_first_version_and_even_when_pinned() {
        let writer = template(&["ce:GetCostAndUsage", "ec2:StopInstances"]);
        for (pin, applied) in [
            (None, None),
            (Some(&writer), None),
            (None, Some(&template(READ).document)),
        ] {
            let got = decide(&spec(UpdatePolicy::Auto, pin, true), applied, &writer);
            match &got {
                Decision::Refuse { offenses } => {
                    assert!(
                        offenses.iter().any(|o| o.action == "ec2:StopInstances"),
                        "{offenses:?}"
                    )
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            assert_eq!(got.rejection(), Some("allowlist"));
        }
        // The other policy level's allowlist does not apply.
        let mut scheduling = spec(UpdatePolicy::Auto, None, true);
        scheduling.policy = Some(PolicyLevel::DataAndScheduling);
        assert_eq!(decide(&scheduling, None, &writer).label(), "apply");
    }

    #[test]
    fn reformatting_is_up_to_date_and_oversize_is_refused() {
        let v1 = template(READ);
        let reformatted = Template::from_body(
            "u",
            serde_json::to_string_pretty(&v1.document).expect("json"),
        )
        .expect("valid");
        assert_ne!(reformatted.sha256, v1.sha256);
        let got = decide(
            &spec(UpdatePolicy::Manual, None, false),
            Some(&v1.document),
            &reformatted,
        );
        assert_eq!(got, Decision::UpToDate);

        let padded = format!(
            r#"{{"Description": "{}", "Resources": {{}}}}"#,
            "x".repeat(MAX_TEMPLATE_BODY_BYTES)
        );
        let big = Template::from_body("u", padded).expect("valid");
        for applied in [None, Some(&v1.document)] {
            let got = decide(&spec(UpdatePolicy::Auto, None, true), applied, &big);
            assert!(
                matches!(got, Decision::TooLarge { bytes } if bytes == big.body.len()),
                "{got:?}"
            );
            assert!(got.message(&big.sha256).contains("51200"));
        }
    }
}
