//! Entry points for the fuzz targets (fuzz/fuzz_targets/) and the stable-toolchain smoke run
//! (tests/fuzz_smoke.rs). Each takes arbitrary bytes and must never panic, whatever they are; errors are the
//! expected outcome for almost every input. Each says how far its input got ([`Reach`]), so the smoke run can
//! show that its inputs reached the parsers and the code behind them rather than stopping at the UTF-8 check.
//! Not part of the supported API.

use std::path::Path;

use crate::desired::{self, PolicyLevel, TemplateSpec, UpdatePolicy};
use crate::guard;
use crate::template::{self, Template};

/// How far one input got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// Not UTF-8: refused before any parser.
    NotText,
    /// The parser ran and refused it.
    Refused,
    /// Parsed, and the code behind the parser ran on it (validation passed for a desired state; the guard's
    /// review, judgments and update decisions for a template).
    Accepted,
}

/// The desired-state parser and validator on arbitrary bytes (as `desired::load` would see a file's text).
pub fn desired(data: &[u8]) -> Reach {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reach::NotText;
    };
    match desired::parse_str(text, Path::new("fuzz.yaml")) {
        Ok(deployments) => {
            for deployment in &deployments {
                let _ = deployment.generation();
                let _ = template::source_url(
                    &deployment.spec.template,
                    template::DEFAULT_CATALOG_BASE_URL,
                );
            }
            Reach::Accepted
        }
        Err(invalid) => {
            // Every problem renders, and names a place or the whole file.
            let _ = invalid.to_string();
            Reach::Refused
        }
    }
}

/// A small template granting read-only access: the "applied" side of the judgments.
const REFERENCE: &str = r#"{"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{
    "PolicyName": "p", "PolicyDocument": {"Statement": [
        {"Effect": "Allow", "Action": ["ec2:Describe*", "s3:GetObject"], "Resource": "*"}]}}]}}}}"#;

/// The template parser (JSON or YAML), the guard's review, level checks and judgment both ways, and the update
/// decision on arbitrary bytes.
pub fn template(data: &[u8]) -> Reach {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reach::NotText;
    };
    let _ = template::parse_document(text);
    let Ok(candidate) = Template::from_body("file:///fuzz/template.json", text.to_string()) else {
        return Reach::Refused;
    };
    let reference = template::parse_document(REFERENCE).expect("the reference template parses");
    let doc = &candidate.document;
    let params = guard::Parameters::new();
    for level in [
        None,
        Some(PolicyLevel::DataOnly),
        Some(PolicyLevel::DataAndScheduling),
    ] {
        if let Ok(review) = guard::review(doc, &params, level) {
            for offense in &review.check.offenses {
                let _ = format!("{} at {}", offense.action, offense.location);
            }
        }
    }
    for (applied, next) in [(&reference, doc), (doc, &reference), (doc, doc)] {
        if let Ok(judgment) = guard::judge(applied, next, &params) {
            let _ = (judgment.is_widening(), judgment.lines());
        }
    }
    let _ = candidate.same_as(REFERENCE);
    let _ = candidate.body_for_api();
    for (policy, updates, pin) in [
        (None, UpdatePolicy::Auto, None),
        (Some(PolicyLevel::DataOnly), UpdatePolicy::Auto, None),
        (
            Some(PolicyLevel::DataAndScheduling),
            UpdatePolicy::Manual,
            None,
        ),
        (None, UpdatePolicy::Auto, Some(candidate.sha256.clone())),
        (None, UpdatePolicy::Auto, Some("0".repeat(64))),
    ] {
        let spec = TemplateSpec {
            policy,
            url: None,
            sha256: pin,
            updates,
            allow_permission_widening: false,
            staging_bucket: None,
            access_analyzer: false,
        };
        for baseline in [
            template::Baseline::Absent,
            template::Baseline::Approved(&reference),
            template::Baseline::Unapproved(doc),
        ] {
            let assessment = template::decide(&spec, &params, baseline, &candidate);
            let _ = assessment.decision.message(&candidate.sha256);
        }
    }
    Reach::Accepted
}
