//! The update decision: may this template version be applied? A pure function of the deployment's template
//! settings and parameters, the template the stack set has now (if it exists) and the version fetched, so every
//! combination is tested below. The guard (`crate::guard`) does the judging; this module orders its verdicts.
//!
//! Why this order: a pin and the policy level are absolute (they hold even for the first version, when no stack
//! set exists yet, and a level offense is named even if that content is somehow applied already); semantic
//! equality comes next (reformatting alone never triggers anything); size is CloudFormation's inline limit,
//! lifted by a staging bucket (stacksetd then uploads exactly the bytes it checked); approval (Manual, or a
//! widening under Auto) comes last, and an operator's pin of exactly this digest is that approval.
//!
//! Size: over 600 lines, most of it the decision's exhaustive table tests; the decision itself is one function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

use super::{MAX_TEMPLATE_BODY_BYTES, Template, sha256_hex};
use crate::desired::{TemplateSpec, UpdatePolicy};
use crate::guard::{self, Judgment, Offense, Parameters};

/// Why a version waits for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HoldReason {
    /// `updates: Manual`: pin the new digest (`sha256:`) to apply it.
    Manual,
    /// `updates: Auto`, but the version grants more than the applied one and `allowPermissionWidening` is false.
    PermissionWidening,
    /// IAM Access Analyzer's CheckNoNewAccess found new access (`accessAnalyzer: true`).
    AccessAnalyzer,
    /// The stack set's template is not one stacksetd approved (changed outside it, or the stack set was
    /// adopted): there is nothing to judge a new version against, so it needs a pin.
    NoBaseline,
}

/// What a new version is judged against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline<'a> {
    /// No stack set yet: the first version.
    Absent,
    /// The stack set's template, which stacksetd approved (its digest is the approval record).
    Approved(&'a Value),
    /// The stack set's template, never recorded as approved (an adopted stack set): the same content as the
    /// candidate is taken as it is; a different one needs a pin.
    Unrecorded(&'a Value),
    /// The stack set's template, which is not the version the approval record names (changed outside
    /// stacksetd): every version needs a pin, the one that equals it included.
    Unapproved(&'a Value),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Decision {
    /// The stack set already has this template (semantically).
    UpToDate,
    /// Apply it (create the stack set with it, or update to it). The judgment is empty on creation.
    Apply { judgment: Judgment },
    /// Reported, not applied, until the operator approves by pinning its digest.
    Hold {
        reason: HoldReason,
        judgment: Judgment,
    },
    /// The policy level refuses it outright.
    Refuse { offenses: Vec<Offense> },
    /// Judging it would exceed the guard's work budget: refused as too complex to verify.
    TooComplex,
    /// A pin names another digest: this content is reported, never applied.
    PinMismatch { pinned: String, found: String },
    /// Over CloudFormation's TemplateBody limit, and no staging bucket to pass it by URL.
    TooLarge { bytes: usize },
}

/// A decision and what a reviewer should read even when the version is applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub decision: Decision,
    /// Reads behind wildcards that return secrets or customer data, a trust without `sts:ExternalId`, actions
    /// the catalog does not know.
    pub warnings: Vec<String>,
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
            Decision::Hold {
                reason: HoldReason::AccessAnalyzer,
                ..
            } => "held_access_analyzer",
            Decision::Hold {
                reason: HoldReason::NoBaseline,
                ..
            } => "held_no_baseline",
            Decision::Refuse { .. } => "refused_allowlist",
            Decision::TooComplex => "refused_too_complex",
            Decision::PinMismatch { .. } => "pin_mismatch",
            Decision::TooLarge { .. } => "too_large",
        }
    }

    /// The `reason` of `stacksetd_template_rejected_total`, for versions that are refused (not merely held).
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Decision::Refuse { .. } => Some("allowlist"),
            Decision::TooComplex => Some("too_complex"),
            Decision::PinMismatch { .. } => Some("pin_mismatch"),
            Decision::TooLarge { .. } => Some("too_large"),
            Decision::UpToDate | Decision::Apply { .. } | Decision::Hold { .. } => None,
        }
    }

    /// The guard's judgment against the applied template, when one was made.
    pub fn judgment(&self) -> Option<&Judgment> {
        match self {
            Decision::Apply { judgment } | Decision::Hold { judgment, .. } => Some(judgment),
            _ => None,
        }
    }

    /// One sentence for logs, /status and `plan`.
    pub fn message(&self, sha256: &str) -> String {
        let short = &sha256[..sha256.len().min(12)];
        let widening = |j: &Judgment| {
            let lines = j.widening_lines();
            let mut text = lines.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
            if lines.len() > 3 {
                text.push_str(&format!("; and {} more", lines.len() - 3));
            }
            text
        };
        match self {
            Decision::UpToDate => format!("template sha256:{short} is applied"),
            Decision::Apply { .. } => format!("template sha256:{short} is applied by this plan"),
            Decision::Hold {
                reason: HoldReason::Manual,
                ..
            } => format!(
                "template sha256:{short} is available (updates: Manual); review it (stacksetd template diff), then \
                 set spec.template.sha256: {sha256} to apply it"
            ),
            Decision::Hold {
                reason: HoldReason::PermissionWidening,
                judgment,
            } => format!(
                "template sha256:{short} widens permissions and is held ({}); review it (stacksetd template diff), \
                 then set spec.template.sha256: {sha256} (or allowPermissionWidening: true) to apply it",
                widening(judgment)
            ),
            Decision::Hold {
                reason: HoldReason::AccessAnalyzer,
                judgment,
            } => format!(
                "template sha256:{short} is held: IAM Access Analyzer found new access ({}); review it, then set \
                 spec.template.sha256: {sha256} to apply it",
                widening(judgment)
            ),
            Decision::Hold {
                reason: HoldReason::NoBaseline,
                ..
            } => format!(
                "template sha256:{short} is available, but the stack set's template is not one stacksetd approved \
                 (changed outside stacksetd, or adopted), so there is nothing to judge it against; review it \
                 (stacksetd template check), then set spec.template.sha256: {sha256} to apply it"
            ),
            Decision::Refuse { offenses } => format!(
                "template sha256:{short} is refused: the policy level forbids {}",
                offenses
                    .iter()
                    .take(5)
                    .map(|o| format!("{} at {}", o.action, o.location))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Decision::TooComplex => {
                format!("template sha256:{short} is refused: {}", guard::TooComplex)
            }
            Decision::PinMismatch { pinned, .. } => format!(
                "template sha256:{short} is not the pinned sha256:{}; it is reported, never applied",
                &pinned[..pinned.len().min(12)]
            ),
            Decision::TooLarge { bytes } => format!(
                "template sha256:{short} is {bytes} bytes, over CloudFormation's {MAX_TEMPLATE_BODY_BYTES}-byte \
                 TemplateBody limit: set spec.template.stagingBucket to an S3 bucket of yours in the management \
                 account, and stacksetd uploads exactly these bytes there by digest and passes that TemplateURL"
            ),
        }
    }
}

/// Decide whether `candidate` may be applied, judged against `baseline` (the stack set's template, approved or
/// not, or none yet).
pub fn decide(
    spec: &TemplateSpec,
    parameters: &Parameters,
    baseline: Baseline<'_>,
    candidate: &Template,
) -> Assessment {
    let mut warnings = Vec::new();
    let decision = decision(spec, parameters, baseline, candidate, &mut warnings);
    Assessment { decision, warnings }
}

fn decision(
    spec: &TemplateSpec,
    parameters: &Parameters,
    baseline: Baseline<'_>,
    candidate: &Template,
    warnings: &mut Vec<String>,
) -> Decision {
    let (applied, approved_baseline, tampered) = match baseline {
        Baseline::Absent => (None, false, false),
        Baseline::Approved(doc) => (Some(doc), true, false),
        Baseline::Unrecorded(doc) => (Some(doc), false, false),
        Baseline::Unapproved(doc) => (Some(doc), false, true),
    };
    // A pin of exactly this digest is the operator's approval.
    let pinned = spec.sha256.is_some();
    if let Some(pinned) = &spec.sha256
        && *pinned != candidate.sha256
    {
        return Decision::PinMismatch {
            pinned: pinned.clone(),
            found: candidate.sha256.clone(),
        };
    }
    match guard::review(&candidate.document, parameters, spec.policy) {
        Err(guard::TooComplex) => return Decision::TooComplex,
        Ok(review) => {
            warnings.extend(review.check.warnings.iter().cloned());
            if review.refused() {
                return Decision::Refuse {
                    offenses: review.check.offenses,
                };
            }
        }
    }
    if applied.is_some_and(|doc| *doc == candidate.document) {
        // Changed outside stacksetd into what the vendor now publishes: still never judged against the approved
        // version, so it is not accepted without a pin.
        if tampered && !pinned {
            return Decision::Hold {
                reason: HoldReason::NoBaseline,
                judgment: Judgment::default(),
            };
        }
        return Decision::UpToDate;
    }
    if candidate.body.len() > MAX_TEMPLATE_BODY_BYTES && spec.staging_bucket.is_none() {
        return Decision::TooLarge {
            bytes: candidate.body.len(),
        };
    }
    let Some(applied) = applied else {
        // The first version: nothing to judge it against; the pin and the level were checked above. Manual means
        // manual: it waits for a pin too.
        return if spec.updates == UpdatePolicy::Manual && !pinned {
            Decision::Hold {
                reason: HoldReason::Manual,
                judgment: Judgment::default(),
            }
        } else {
            Decision::Apply {
                judgment: Judgment::default(),
            }
        };
    };
    let judgment = match guard::judge(applied, &candidate.document, parameters) {
        Ok(j) => j,
        Err(guard::TooComplex) => return Decision::TooComplex,
    };
    if pinned {
        return Decision::Apply { judgment };
    }
    if !approved_baseline {
        // Judged against a template stacksetd never approved, a "no widening" would vouch for someone else's
        // change: like Manual, only a pin applies it.
        return Decision::Hold {
            reason: HoldReason::NoBaseline,
            judgment,
        };
    }
    match spec.updates {
        UpdatePolicy::Manual => Decision::Hold {
            reason: HoldReason::Manual,
            judgment,
        },
        UpdatePolicy::Auto if judgment.is_widening() && !spec.allow_permission_widening => {
            Decision::Hold {
                reason: HoldReason::PermissionWidening,
                judgment,
            }
        }
        UpdatePolicy::Auto => Decision::Apply { judgment },
    }
}

/// What the approval record says of the stack set's template (see [`Baseline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum BaselineState {
    Approved,
    Unrecorded,
    Unapproved,
}

/// Most assessments kept; judging is pure, so a repeated (settings, parameters, applied, candidate) is answered
/// from here instead of judging again on every pass.
const CACHED_ASSESSMENTS: usize = 512;

/// A cache of [`decide`] by its inputs.
#[derive(Default)]
pub struct Assessments {
    cache: Mutex<HashMap<String, Arc<Assessment>>>,
}

impl Assessments {
    /// `applied_body` is the stack set's template and what the approval record says of it.
    pub fn assess(
        &self,
        spec: &TemplateSpec,
        parameters: &Parameters,
        applied_body: Option<(&str, BaselineState)>,
        candidate: &Template,
    ) -> Arc<Assessment> {
        let key = sha256_hex(
            serde_json::json!([
                spec,
                parameters,
                applied_body.map(|(b, approved)| (sha256_hex(b.as_bytes()), approved)),
                candidate.sha256
            ])
            .to_string()
            .as_bytes(),
        );
        if let Some(hit) = self.cache.lock().expect("assessment cache lock").get(&key) {
            return hit.clone();
        }
        // An applied template that does not parse compares as `null`: different from anything, so any version is
        // a change and every permission is new.
        let applied_doc =
            applied_body.map(|(b, state)| (super::parse_document(b).unwrap_or_default(), state));
        let baseline = match &applied_doc {
            None => Baseline::Absent,
            Some((doc, BaselineState::Approved)) => Baseline::Approved(doc),
            Some((doc, BaselineState::Unrecorded)) => Baseline::Unrecorded(doc),
            Some((doc, BaselineState::Unapproved)) => Baseline::Unapproved(doc),
        };
        let assessment = Arc::new(decide(spec, parameters, baseline, candidate));
        let mut cache = self.cache.lock().expect("assessment cache lock");
        if cache.len() >= CACHED_ASSESSMENTS {
            cache.clear();
        }
        cache.insert(key, assessment.clone());
        assessment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::PolicyLevel;
    use crate::guard::Parameters;

    fn approved(applied: Option<&serde_json::Value>) -> Baseline<'_> {
        applied.map_or(Baseline::Absent, Baseline::Approved)
    }

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
            staging_bucket: None,
            access_analyzer: false,
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
            // First version: applied under Auto; Manual means manual (a pin first); a pin of other content holds.
            (auto, None, false, None, &v1, "apply"),
            (manual, None, false, None, &v1, "held_manual"),
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
            let got = decide(
                &spec(updates, pin, widen),
                &Parameters::new(),
                approved(applied),
                candidate,
            )
            .decision;
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

    /// A version the guard cannot verify (here a chain of conditions past the resolver's depth) is refused under
    /// every setting, pinned or not, first version or not: swallowing the error would apply it.
    #[test]
    fn a_version_too_complex_to_verify_is_refused_pinned_or_not() {
        let mut doc: serde_json::Value = serde_json::from_str(&role(&["*"])).expect("json");
        let mut conditions = serde_json::Map::new();
        for i in 0..500 {
            conditions.insert(
                format!("C{i}"),
                serde_json::json!({"Condition": format!("C{}", i + 1)}),
            );
        }
        conditions.insert("C500".into(), serde_json::json!({"Fn::Equals": ["a", "a"]}));
        doc["Conditions"] = serde_json::Value::Object(conditions);
        doc["Resources"]["Role"]["Condition"] = serde_json::json!("C0");
        let complex =
            Template::from_body("https://example.com/c.json", doc.to_string()).expect("parses");
        let applied = template(&["ec2:Describe*"]);
        for updates in [UpdatePolicy::Auto, UpdatePolicy::Manual] {
            for pin in [None, Some(&complex)] {
                for widen in [false, true] {
                    for baseline in [Some(&applied.document), None] {
                        let mut spec = spec(updates, pin, widen);
                        for level in [Some(PolicyLevel::DataOnly), None] {
                            spec.policy = level;
                            let d = decide(&spec, &Parameters::new(), approved(baseline), &complex)
                                .decision;
                            assert_eq!(
                                d.label(),
                                "refused_too_complex",
                                "{updates:?} {pin:?} {widen} {level:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_held_widening_carries_its_diff_and_names_the_digest() {
        let applied = template(READ);
        let wider = template(MORE_READ);
        let got = decide(
            &spec(UpdatePolicy::Auto, None, false),
            &Parameters::new(),
            Baseline::Approved(&applied.document),
            &wider,
        )
        .decision;
        let judgment = got.judgment().expect("a hold carries its judgment");
        assert!(
            judgment
                .widening_lines()
                .iter()
                .any(|l| l.contains("+ ec2:DescribeInstances (List)")),
            "{judgment:?}"
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
            let got = decide(
                &spec(UpdatePolicy::Auto, pin, true),
                &Parameters::new(),
                approved(applied),
                &writer,
            )
            .decision;
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
        assert_eq!(
            decide(&scheduling, &Parameters::new(), Baseline::Absent, &writer)
                .decision
                .label(),
            "apply"
        );
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
            &Parameters::new(),
            Baseline::Approved(&v1.document),
            &reformatted,
        )
        .decision;
        assert_eq!(got, Decision::UpToDate);

        let padded = format!(
            r#"{{"Description": "{}", "Resources": {{}}}}"#,
            "x".repeat(MAX_TEMPLATE_BODY_BYTES)
        );
        let big = Template::from_body("u", padded).expect("valid");
        for applied in [None, Some(&v1.document)] {
            let got = decide(
                &spec(UpdatePolicy::Auto, None, true),
                &Parameters::new(),
                approved(applied),
                &big,
            )
            .decision;
            assert!(
                matches!(got, Decision::TooLarge { bytes } if bytes == big.body.len()),
                "{got:?}"
            );
            assert!(got.message(&big.sha256).contains("51200"));
        }
    }
}
