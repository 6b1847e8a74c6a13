//! Which keys each mapping of a `StackSetDeployment` allows, so that every unknown key of a file is reported at
//! once with the allowed names and the closest one (serde's `deny_unknown_fields` stops at the first). The table
//! mirrors model.rs; a test checks it against serde's own list so the two cannot drift apart.

use super::locate::{DocLayout, Finding, child_path};
pub use crate::input::closest;

/// Mapping path -> the keys it allows. Paths not listed are free-form maps (labels, parameters, tags) or scalars.
pub const FIELDS: &[(&str, &[&str])] = &[
    ("", &["apiVersion", "kind", "metadata", "spec"]),
    ("metadata", &["name", "labels"]),
    (
        "spec",
        &[
            "stackSetName",
            "description",
            "managementAccountId",
            "callAs",
            "template",
            "parameters",
            "capabilities",
            "tags",
            "deploymentTargets",
            "regions",
            "autoDeployment",
            "operationPreferences",
            "managedExecution",
            "driftDetection",
            "repairCoverage",
            "repairInoperable",
            "accessCheck",
            "rollout",
            "credentials",
            "managementAccount",
            "suspend",
            "ensure",
            "adopt",
        ],
    ),
    (
        "spec.template",
        &[
            "policy",
            "url",
            "sha256",
            "updates",
            "allowPermissionWidening",
            "stagingBucket",
            "accessAnalyzer",
        ],
    ),
    (
        "spec.deploymentTargets",
        &["organizationalUnitIds", "accounts", "accountFilterType"],
    ),
    (
        "spec.autoDeployment",
        &["enabled", "retainStacksOnAccountRemoval", "dependsOn"],
    ),
    (
        "spec.operationPreferences",
        &[
            "failureToleranceCount",
            "failureTolerancePercentage",
            "maxConcurrentCount",
            "maxConcurrentPercentage",
            "regionConcurrencyType",
            "regionOrder",
            "concurrencyMode",
        ],
    ),
    ("spec.managedExecution", &["active"]),
    ("spec.driftDetection", &["interval", "remediate"]),
    ("spec.accessCheck", &["roleName"]),
    ("spec.rollout", &["canary", "bake", "promote"]),
    (
        "spec.rollout.canary",
        &["accounts", "organizationalUnitIds"],
    ),
    (
        "spec.credentials",
        &["roleArn", "externalId", "sessionName", "durationSeconds"],
    ),
    ("spec.managementAccount", &["deploy", "serviceRoleArn"]),
];

/// One finding per unknown key in the document, in no particular order.
pub fn unknown_fields(doc: &DocLayout) -> Vec<Finding> {
    let mut out = Vec::new();
    for (path, allowed) in FIELDS {
        let Some(keys) = doc.keys.get(*path) else {
            continue;
        };
        for key in keys.iter().filter(|k| !allowed.contains(&k.as_str())) {
            let field = child_path(path, key);
            // `template {policy: DataOnly}` reads as the key `template {policy`: a key that lost its `:`.
            if let Some((first, rest)) = key.split_once(char::is_whitespace)
                && allowed.contains(&first)
            {
                out.push(Finding {
                    pos: doc.pos_of(&field),
                    field: child_path(path, first),
                    message: format!(
                        "`{key}: ...` has no `:` after its key: write `{first}: {} ...`",
                        rest.trim_start()
                    ),
                });
                continue;
            }
            let mut message = format!("unknown field `{key}`");
            if let Some(best) = closest(key, allowed) {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
            let place = if path.is_empty() {
                "at the top level"
            } else {
                "here"
            };
            message.push_str(&format!(" Allowed {place}: {}", allowed.join(", ")));
            out.push(Finding {
                pos: doc.pos_of(&field),
                field,
                message,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_prefixes_and_typos_but_not_strangers() {
        let c = &[
            "maxConcurrentCount",
            "maxConcurrentPercentage",
            "regionOrder",
        ];
        assert_eq!(
            closest("maxConcurrentPercent", c),
            Some("maxConcurrentPercentage")
        );
        assert_eq!(closest("maxConcurentCount", c), Some("maxConcurrentCount"));
        assert_eq!(closest("regionorder", c), Some("regionOrder"));
        assert_eq!(closest("banana", c), None);
    }

    /// The table must list exactly the fields serde accepts: ask serde for its list by feeding it an unknown key
    /// at each mapping of a valid document.
    #[test]
    fn table_matches_the_model() {
        // VALID plus the blocks it leaves out (its line numbers are pinned by other tests).
        let valid = format!(
            "{}  credentials:\n    roleArn: arn:aws:iam::123456789012:role/stacksetd\n  managementAccount:\n    deploy: false\n  rollout:\n    canary:\n      accounts: [\"111111111111\"]\n",
            crate::desired::parse::tests::VALID
        );
        for (path, allowed) in FIELDS {
            let text = crate::desired::parse::tests::insert_key(&valid, path, "zzzUnknown: 1");
            let err = serde_norway::from_str::<crate::desired::Deployment>(&text)
                .expect_err("an unknown key must be refused");
            let msg = err.to_string();
            let listed: Vec<&str> = msg
                .split("expected one of ")
                .nth(1)
                .or_else(|| msg.split("expected ").nth(1))
                .unwrap_or_else(|| panic!("no field list in {msg}"))
                .split(" at line")
                .next()
                .unwrap_or_default()
                .split([',', ' '])
                .map(|s| s.trim_matches('`'))
                .filter(|s| !s.is_empty() && *s != "or")
                .collect();
            assert_eq!(&listed, allowed, "fields of `{path}`");
        }
    }
}
