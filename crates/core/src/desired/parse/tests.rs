//! Parser tests, and the helpers the rule tests share (`VALID`, `insert_key`, `problems`, `one`).
//!
//! Size: over 600 lines: one test per parser behaviour (positions, duplicates, limits, encodings).

use super::*;
use crate::desired::Problem;

/// A valid document in block style, so tests can edit one line.
pub const VALID: &str = "\
apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: aimably
spec:
  stackSetName: AimablyDataOnly
  managementAccountId: \"123456789012\"
  template:
    policy: DataOnly
  deploymentTargets:
    organizationalUnitIds: [ROOT]
  regions: [us-west-2]
  autoDeployment:
    enabled: true
  operationPreferences:
    failureTolerancePercentage: 100
  managedExecution:
    active: true
  driftDetection:
    interval: 24h
  accessCheck:
    roleName: AimablyMemberRole
";

/// `VALID` with `line` inserted as the first entry of the block mapping at `path`.
pub fn insert_key(doc: &str, path: &str, line: &str) -> String {
    let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
    let mut at = 0;
    let mut indent = 0;
    if !path.is_empty() {
        for segment in path.split('.') {
            let head = format!("{}{segment}:", " ".repeat(indent));
            at = at
                + lines[at..]
                    .iter()
                    .position(|l| l == &head)
                    .expect("path in VALID")
                + 1;
            indent += 2;
        }
    }
    lines.insert(at, format!("{}{line}", " ".repeat(indent)));
    lines.join("\n") + "\n"
}

/// The problems of a text (empty when it is valid).
pub fn problems(text: &str) -> Vec<Problem> {
    match crate::desired::parse_str(text, std::path::Path::new("d.yaml")) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.problems,
    }
}

/// Assert exactly one problem, at (line, column) and field, whose message contains `phrase`.
#[track_caller]
pub fn one(text: &str, line: usize, column: usize, field: &str, phrase: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let p = &found[0];
    assert_eq!(
        (p.line, p.column, p.field.as_str()),
        (line, column, field),
        "{p}"
    );
    assert!(p.message.contains(phrase), "`{phrase}` not in: {p}");
}

#[test]
fn valid_block_document_has_no_problems() {
    assert_eq!(problems(VALID), Vec::new());
}

/// The reference document of the design, with every field, in flow style.
const FULL: &str = r#"
apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: aimably
  labels: {owner: finops}
spec:
  stackSetName: AimablyDataOnly
  description: Aimably access to usage data in every member account
  managementAccountId: "123456789012"
  callAs: DELEGATED_ADMIN
  template:
    policy: DataOnly
    url: https://example.com/t.json
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    updates: Manual
    allowPermissionWidening: true
  parameters: {ManagementAccountId: "123456789012"}
  capabilities: [CAPABILITY_NAMED_IAM, CAPABILITY_IAM]
  tags: {team: finops}
  deploymentTargets:
    organizationalUnitIds: [ROOT, ou-ab12-cdef5678]
    accounts: ["000000000001"]
    accountFilterType: DIFFERENCE
  regions: [us-west-2, eu-central-1]
  autoDeployment: {enabled: true, retainStacksOnAccountRemoval: true}
  operationPreferences:
    failureToleranceCount: 2
    maxConcurrentCount: 3
    regionConcurrencyType: SEQUENTIAL
    regionOrder: [eu-central-1, us-west-2]
    concurrencyMode: STRICT_FAILURE_TOLERANCE
  managedExecution: {active: true}
  driftDetection: {interval: 24h, remediate: true}
  repairCoverage: false
  repairInoperable: true
  accessCheck: {roleName: AimablyMemberRole}
  suspend: true
  ensure: Absent
"#;

#[test]
fn full_document_parses_to_its_values() {
    use crate::desired::model::*;
    let mut docs = crate::desired::parse_str(FULL, std::path::Path::new("d.yaml")).expect("valid");
    assert_eq!(docs.len(), 1);
    let d = docs.remove(0);
    assert_eq!(
        d.metadata.labels.get("owner").map(String::as_str),
        Some("finops")
    );
    let s = d.spec;
    assert_eq!(
        s.description.as_deref(),
        Some("Aimably access to usage data in every member account")
    );
    assert_eq!(
        (s.management_account_id.as_str(), s.call_as),
        ("123456789012", CallAs::DelegatedAdmin)
    );
    let t = &s.template;
    assert_eq!(
        (t.policy, t.url.as_deref()),
        (
            Some(PolicyLevel::DataOnly),
            Some("https://example.com/t.json")
        )
    );
    assert_eq!(t.sha256.as_deref().map(str::len), Some(64));
    assert_eq!(
        (t.updates, t.allow_permission_widening),
        (UpdatePolicy::Manual, true)
    );
    assert_eq!(
        s.parameters.get("ManagementAccountId").map(String::as_str),
        Some("123456789012")
    );
    assert_eq!(
        s.capabilities,
        vec![Capability::CapabilityNamedIam, Capability::CapabilityIam]
    );
    assert_eq!(s.tags.get("team").map(String::as_str), Some("finops"));
    let dt = &s.deployment_targets;
    assert_eq!(dt.organizational_unit_ids, vec!["ROOT", "ou-ab12-cdef5678"]);
    assert_eq!(
        (dt.accounts.clone(), dt.account_filter_type),
        (
            vec!["000000000001".to_string()],
            AccountFilterType::Difference
        )
    );
    assert_eq!(s.regions, vec!["us-west-2", "eu-central-1"]);
    assert_eq!(
        s.auto_deployment,
        AutoDeployment {
            enabled: true,
            retain_stacks_on_account_removal: true,
            depends_on: Vec::new(),
        }
    );
    let p = &s.operation_preferences;
    assert_eq!(
        (p.failure_tolerance_count, p.max_concurrent_count),
        (Some(2), Some(3))
    );
    assert_eq!(
        (p.failure_tolerance_percentage, p.max_concurrent_percentage),
        (None, None)
    );
    assert_eq!(
        p.region_concurrency_type,
        Some(RegionConcurrencyType::Sequential)
    );
    assert_eq!(p.region_order, vec!["eu-central-1", "us-west-2"]);
    assert_eq!(
        p.concurrency_mode,
        Some(ConcurrencyMode::StrictFailureTolerance)
    );
    assert!(s.managed_execution.active);
    let drift = s.drift_detection.expect("drift detection");
    assert_eq!(
        (drift.interval.0.as_secs(), drift.remediate),
        (86_400, true)
    );
    assert_eq!(
        (s.repair_coverage, s.repair_inoperable, s.suspend),
        (false, true, true)
    );
    assert_eq!(
        s.access_check.map(|a| a.role_name).as_deref(),
        Some("AimablyMemberRole")
    );
    assert_eq!(s.ensure, Ensure::Absent);
}

#[test]
fn the_reference_document_is_valid() {
    let reference = r#"
apiVersion: stacksetd.dev/v1alpha1
kind: StackSetDeployment
metadata:
  name: aimably
spec:
  stackSetName: AimablyDataOnly
  description: Aimably access to usage data in every member account
  managementAccountId: "123456789012"
  callAs: SELF
  template:
    policy: DataOnly
    url: https://example.com/t.json
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    updates: Auto
    allowPermissionWidening: false
  parameters: {ManagementAccountId: "123456789012"}
  capabilities: [CAPABILITY_NAMED_IAM]
  tags: {team: finops}
  deploymentTargets:
    organizationalUnitIds: [ROOT]
    accounts: []
    accountFilterType: NONE
  regions: [us-west-2]
  autoDeployment: {enabled: true, retainStacksOnAccountRemoval: false}
  operationPreferences:
    failureTolerancePercentage: 100
    maxConcurrentPercentage: 100
    regionConcurrencyType: PARALLEL
    concurrencyMode: SOFT_FAILURE_TOLERANCE
  managedExecution: {active: true}
  driftDetection: {interval: 24h, remediate: false}
  repairCoverage: true
  repairInoperable: false
  accessCheck: {roleName: AimablyMemberRole}
  suspend: false
  ensure: Present
"#;
    assert_eq!(problems(reference), Vec::new());
}

#[test]
fn defaults_apply_to_absent_fields() {
    let d = crate::desired::parse_str(VALID, std::path::Path::new("d.yaml")).expect("valid");
    let s = &d[0].spec;
    assert_eq!(
        s.capabilities,
        vec![crate::desired::Capability::CapabilityNamedIam]
    );
    assert!(s.repair_coverage && !s.suspend && s.auto_deployment.enabled);
}

/// serde_norway reports positions in the whole stream, not in the document: pinned because the opposite would
/// misplace every problem after the first `---`.
#[test]
fn serde_locations_are_relative_to_the_stream() {
    let text = format!(
        "{VALID}---\n{}",
        VALID.replace("regions: [us-west-2]", "regions: {a: 1}")
    );
    let mut docs = serde_norway::Deserializer::from_str(&text);
    assert!(<Deployment as serde::Deserialize>::deserialize(docs.next().expect("doc 1")).is_ok());
    let err = <Deployment as serde::Deserialize>::deserialize(docs.next().expect("doc 2"))
        .expect_err("bad");
    let loc = err.location().expect("location");
    assert_eq!((loc.line(), loc.column()), (23 + 12, 12));
}

#[test]
fn bad_second_document_is_placed_in_the_file() {
    let second = VALID
        .replace("name: aimably", "name: other")
        .replace("AimablyDataOnly", "Other");
    let text = format!(
        "{VALID}---\n{}",
        second.replace("regions: [us-west-2]", "regions: {a: 1}")
    );
    one(
        &text,
        35,
        12,
        "spec.regions",
        "invalid type: map, expected a sequence",
    );
    let text = format!("{VALID}---\n{}", second.replace("us-west-2", "us-west2"));
    one(
        &text,
        35,
        13,
        "spec.regions[0]",
        "did you mean `us-west-2`?",
    );
}

#[test]
fn empty_file_and_empty_documents() {
    for text in ["", "# nothing\n", "---\n", "---\n---\n...\n"] {
        one(text, 1, 1, "", "no StackSetDeployment documents");
    }
    let text = format!("---\n---\n{VALID}");
    assert_eq!(problems(&text), Vec::new());
    let docs = crate::desired::parse_str(&text, std::path::Path::new("d.yaml")).expect("valid");
    assert_eq!(docs.len(), 1);
}

#[test]
fn unknown_fields_are_all_reported_with_the_closest_name() {
    let text = insert_key(
        VALID,
        "spec.operationPreferences",
        "maxConcurrentPercent: 10",
    );
    one(
        &text,
        16,
        5,
        "spec.operationPreferences.maxConcurrentPercent",
        "did you mean `maxConcurrentPercentage`?",
    );
    let p = problems(&text);
    assert!(
        p[0].message
            .contains("Allowed here: failureToleranceCount,"),
        "{}",
        p[0]
    );
    let text = insert_key(
        &insert_key(VALID, "spec", "region: [us-east-1]"),
        "",
        "kinds: x",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!(
        (p[0].line, p[0].column, p[0].field.as_str()),
        (1, 1, "kinds")
    );
    assert!(p[0].message.contains("did you mean `kind`?"));
    assert_eq!(
        (p[1].line, p[1].column, p[1].field.as_str()),
        (7, 3, "spec.region")
    );
    assert!(p[1].message.contains("did you mean `regions`?"));
}

#[test]
fn account_ids_must_be_quoted() {
    let unquoted = VALID.replace("\"123456789012\"", "123456789012");
    one(
        &unquoted,
        7,
        24,
        "spec.managementAccountId",
        "must be quoted",
    );
    let leading_zero = VALID.replace("\"123456789012\"", "012345678901");
    one(
        &leading_zero,
        7,
        24,
        "spec.managementAccountId",
        "leading zeros are lost",
    );
    let quoted = VALID.replace("\"123456789012\"", "'012345678901'");
    assert_eq!(problems(&quoted), Vec::new());
    let short = VALID.replace("\"123456789012\"", "\"12345678901\"");
    one(
        &short,
        7,
        24,
        "spec.managementAccountId",
        "exactly 12 digits",
    );
}

#[test]
fn serde_errors_name_the_field() {
    let text = VALID.replace("name: aimably", "name: [1]");
    one(
        &text,
        4,
        9,
        "metadata.name",
        "invalid type: sequence, expected a string",
    );
    let text = VALID.replace(
        "failureTolerancePercentage: 100",
        "failureTolerancePercentage: 99999999999999999999999",
    );
    one(
        &text,
        16,
        33,
        "spec.operationPreferences.failureTolerancePercentage",
        "expected a whole number",
    );
    let text = VALID.replace(
        "failureTolerancePercentage: 100",
        "failureTolerancePercentage: -1",
    );
    one(
        &text,
        16,
        33,
        "spec.operationPreferences.failureTolerancePercentage",
        "-1",
    );
    let text = VALID.replace("  regions: [us-west-2]\n", "");
    one(
        &text,
        5,
        1,
        "spec.regions",
        "missing field `regions`; add it under `spec`",
    );
    let text = VALID.replace("policy: DataOnly", "policy: DataOnyl");
    one(
        &text,
        9,
        13,
        "spec.template.policy",
        "did you mean `DataOnly`?",
    );
    let text = VALID.replace("interval: 24h", "interval: often");
    one(
        &text,
        20,
        15,
        "spec.driftDetection.interval",
        "write e.g. 30s, 5m, 24h",
    );
}

#[test]
fn duplicate_keys_are_reported_once() {
    let text = insert_key(VALID, "spec", "stackSetName: Again");
    one(&text, 7, 3, "spec.stackSetName", "appears twice");
    let text = insert_key(VALID, "spec", "tags: {a: x, a: y}");
    one(&text, 6, 16, "spec.tags.a", "appears twice");
}

#[test]
fn syntax_error_still_checks_earlier_documents() {
    let first = VALID.replace("us-west-2", "us-west2");
    let text = format!("{first}---\nkind: [unclosed\n");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_eq!((p[0].line, p[0].field.as_str()), (12, "spec.regions[0]"));
    assert_eq!(p[1].line, 25);
    assert!(p[1].message.contains("YAML syntax error"), "{}", p[1]);
}

#[test]
fn several_problems_are_reported_together_in_line_order() {
    let text = VALID
        .replace("name: aimably", "name: Aimably")
        .replace("[us-west-2]", "[us-west-2, us-west-2]")
        .replace("roleName: AimablyMemberRole", "roleName: a/b");
    let p = problems(&text);
    let got: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (4, "metadata.name"),
            (12, "spec.regions[1]"),
            (22, "spec.accessCheck.roleName")
        ]
    );
    let shown = crate::desired::Invalid { problems: p }.to_string();
    assert!(
        shown.starts_with("d.yaml:4:9: metadata.name: `Aimably` is not a valid name"),
        "{shown}"
    );
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let p = problems(&bomb);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("alias bomb"), "{}", p[0]);
    // a4 is the first anchor over the limit: 1 + 10 * 11_111 nodes.
    assert_eq!(p[0].line, 5, "the alias that crosses the limit");
}

#[test]
fn deep_nesting_is_refused() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let p = problems(&deep);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].message.contains("deeper than 64"), "{}", p[0]);
    assert_eq!((p[0].line, p[0].column), (1, 65));
    // Far deeper: yaml-rust2's scanner refuses it first, which is as good.
    let deeper = "[".repeat(crate::desired::MAX_FILE_BYTES as usize);
    let p = problems(&deeper);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].message.contains("recursion limit") || p[0].message.contains("deeper than 64"),
        "{}",
        p[0]
    );
    let deep_map = (0..200)
        .map(|i| format!("{}k:", " ".repeat(i)))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(problems(&deep_map)[0].message.contains("deeper than 64"));
}

#[test]
fn hostile_inputs_never_panic() {
    let inputs = [
        "\u{feff}",
        "- - - -",
        ":",
        "? [a]\n: b",
        "!!binary x",
        "&a *a",
        "*unknown",
        "a: *b",
        "{a: 1, a: 2}",
        "---\n...\n---\n- 1\n",
        "%YAML 1.2\n---\nx",
        "\t",
        "apiVersion: \"\\xZZ\"",
        "? \n",
        "[}",
        "\"",
        "key: !!int abc",
        "a: 1e999999",
        "spec: {regions: [&r us-west-2, *r]}",
        "a:\n  - b\n c: d",
    ];
    for text in inputs {
        let _ = problems(text);
        let _ = problems(&format!("{VALID}---\n{text}"));
    }
}

/// A cheap, seeded stand-in for fuzzing: small random edits of a valid two-document file never panic and always
/// yield a result.
#[test]
fn random_mutations_never_panic() {
    use rand::{Rng, SeedableRng};
    const MUTATIONS: usize = 1_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet: Vec<char> = "[]{}:-,&*!|>'\"#? \n\t0123456789aZ.%@`~\\"
        .chars()
        .collect();
    let base: Vec<char> = format!("{VALID}---\n{VALID}").chars().collect();
    for _ in 0..MUTATIONS {
        let mut s = base.clone();
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(0..s.len());
            let c = alphabet[rng.random_range(0..alphabet.len())];
            match rng.random_range(0..3) {
                0 => drop(s.remove(i)),
                1 => s.insert(i, c),
                _ => s[i] = c,
            }
        }
        let text: String = s.into_iter().collect();
        let _ = problems(&text);
    }
}

#[test]
fn load_reads_parses_and_names_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("desired.yaml");
    std::fs::write(&path, VALID).expect("write");
    let state = crate::desired::load(&path).expect("valid file");
    assert_eq!(
        (state.path.as_path(), state.deployments.len()),
        (path.as_path(), 1)
    );
    std::fs::write(&path, VALID.replace("us-west-2", "us-west2")).expect("write");
    match crate::desired::load(&path) {
        Err(crate::error::Error::Invalid(invalid)) => {
            let shown = invalid.to_string();
            assert!(
                shown.starts_with(&format!("{}:12:13: spec.regions[0]: ", path.display())),
                "{shown}"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}
