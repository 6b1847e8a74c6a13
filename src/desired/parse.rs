//! Parsing: multi-document YAML into typed deployments, with every problem placed at a line and column.
//!
//! Two passes. `locate` reads the event stream (positions, syntax, limits); then serde_norway deserializes each
//! document that passed. serde stops at the first error of a document, so the unknown-key check (`schema`) runs on
//! the event pass instead and reports every unknown key; serde's errors are then mapped to a field path.
//!
//! serde_norway's error locations are relative to the whole stream, not to the document (its one libyaml parser
//! reads the stream end to end); a test pins this, because the opposite would silently misplace every problem of
//! a second document.

use super::Deployment;
use super::locate::{self, DocLayout, Finding, Pos, child_path};
use super::schema;

/// A deserialized document plus where its fields are in the file.
pub(crate) struct Document {
    pub deployment: Deployment,
    pub layout: DocLayout,
}

/// Every document that deserialized, and the problems of those that did not (or of the file as a whole).
pub(crate) struct Parsed {
    pub documents: Vec<Document>,
    pub findings: Vec<Finding>,
}

pub(crate) fn documents(text: &str) -> Parsed {
    let layout = locate::layout(text);
    let mut findings: Vec<Finding> = layout.findings.into_iter().map(|(_, f)| f).collect();
    let mut documents = Vec::new();

    // serde_norway yields one document per YAML document, like the event pass, except that a stream without any
    // document still yields one (empty) document: zipping the two stops at the shorter, which skips that one.
    // After a syntax error serde_norway repeats the error forever; the zip bounds the iteration.
    let mut serde_docs = serde_norway::Deserializer::from_str(text);
    for doc in layout.docs {
        if doc.broken {
            // The event pass reported why; nothing after a broken document can be read reliably, and serde must
            // not be given the input the limits refused.
            break;
        }
        let Some(de) = serde_docs.next() else { break };
        if doc.empty {
            continue;
        }
        let unknown = schema::unknown_fields(&doc);
        let had_unknown = !unknown.is_empty();
        let had_duplicate = doc.duplicates > 0;
        findings.extend(unknown);
        findings.extend(quoting(&doc));
        match <Deployment as serde::Deserialize>::deserialize(de) {
            Ok(deployment) if !had_unknown => documents.push(Document {
                deployment,
                layout: doc,
            }),
            Ok(_) => {}
            Err(err) => {
                let syntax = is_syntax_error(&err);
                let finding = serde_finding(&err, &doc);
                // The event pass already reported serde's first unknown key (with a suggestion) or duplicate key.
                let reported = (had_unknown && finding.message.starts_with("unknown field"))
                    || (had_duplicate && finding.message.starts_with("duplicate field"));
                if !reported {
                    findings.push(finding);
                }
                if syntax {
                    break;
                }
            }
        }
    }

    if documents.is_empty() && findings.is_empty() {
        findings.push(Finding {
            pos: Pos { line: 1, column: 1 },
            field: String::new(),
            message: format!(
                "no StackSetDeployment documents; the file needs at least one document starting with \
                 `apiVersion: {}` and `kind: {}`",
                super::API_VERSION,
                super::KIND
            ),
        });
    }
    Parsed {
        documents,
        findings,
    }
}

/// Account ids written as YAML numbers: serde_norway would accept the digits as text, but any other YAML tool
/// (and a reader) sees a number, which loses leading zeros. Quoting makes the id unambiguous.
fn quoting(doc: &DocLayout) -> Vec<Finding> {
    let mut ids: Vec<(&String, &locate::Spot)> = doc
        .spots
        .iter()
        .filter(|(path, spot)| {
            spot.numeric
                && (*path == "spec.managementAccountId"
                    || path.starts_with("spec.deploymentTargets.accounts["))
        })
        .collect();
    ids.sort_by_key(|(path, _)| path.as_str());
    ids.into_iter()
        .map(|(path, spot)| Finding {
            pos: spot.value,
            field: path.clone(),
            message: "an account id must be quoted, e.g. \"012345678901\": unquoted, YAML reads a number and \
                      leading zeros are lost"
                .to_string(),
        })
        .collect()
}

fn is_syntax_error(err: &serde_norway::Error) -> bool {
    // serde_norway does not expose its error kinds; libyaml's own messages are the ones that mention the
    // structure being parsed ("while parsing a block mapping", "did not find expected key", ...).
    let msg = err.to_string();
    msg.contains("while parsing")
        || msg.contains("while scanning")
        || msg.contains("did not find expected")
}

/// Turn a serde_norway error into a finding with a field path and a position.
fn serde_finding(err: &serde_norway::Error, doc: &DocLayout) -> Finding {
    let pos = err
        .location()
        .map(|l| Pos {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    let full = err.to_string();
    let (path, message) = split_message(&full);
    // serde names the innermost field it knows; a custom error of a field's own deserializer (a bad duration)
    // carries its parent's path but the field's position, which names the field exactly.
    // ("missing field" is placed at the mapping's first key, which is not the field.)
    let missing = message.starts_with("missing field ");
    let at = doc.path_at(pos).filter(|_| !missing).map(str::to_string);
    let (path, pos) = match (path, at) {
        (Some(p), Some(a)) if a.len() > p.len() && a.starts_with(&p) => {
            let value = doc.value_pos_of(&a);
            (a, value)
        }
        (Some(p), _) => (p, pos),
        (None, a) => (a.unwrap_or_default(), pos),
    };

    // "missing field `x`": name the missing field and point at the mapping that lacks it.
    if let Some(name) = backticked(message.strip_prefix("missing field ").unwrap_or("")) {
        let field = child_path(&path, name);
        return Finding {
            pos: doc.pos_of(&path),
            message: format!(
                "missing field `{name}`; add it{}",
                if path.is_empty() {
                    " at the top level".to_string()
                } else {
                    format!(" under `{path}`")
                }
            ),
            field,
        };
    }
    // "unknown variant `X`, expected one of `A`, `B`": add the likely intended value.
    let mut message = message.to_string();
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        if let Some(given) = backticked(rest) {
            let expected: Vec<&str> = rest
                .split("expected ")
                .nth(1)
                .unwrap_or("")
                .split(['`', ',', ' '])
                .filter(|s| !s.is_empty() && *s != "one" && *s != "of" && *s != "or")
                .collect();
            if let Some(best) = schema::closest(given, &expected) {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
        }
    }
    // serde names Rust's integer types; an operator wrote a YAML number.
    for (rust, plain) in [
        ("u32", "a whole number from 0 to 4294967295"),
        ("u128", "number"),
    ] {
        message = message.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    Finding {
        pos: if pos == Pos::default() {
            doc.pos_of(&path)
        } else {
            pos
        },
        field: path,
        message,
    }
}

/// serde_norway's Display is "PATH: MESSAGE at line L column C" (path and position optional): take it apart.
fn split_message(full: &str) -> (Option<String>, &str) {
    let mut msg = full;
    if let Some(i) = msg.rfind(" at line ") {
        if msg[i + 9..]
            .split(" column ")
            .all(|n| n.parse::<usize>().is_ok())
        {
            msg = &msg[..i];
        }
    }
    // A path has no spaces ("spec.regions[1]"); a message's own "invalid type: ..." does.
    if let Some((head, tail)) = msg.split_once(": ") {
        if !head.contains(' ') && !head.is_empty() {
            return (Some(head.to_string()), tail);
        }
    }
    (None, msg)
}

/// The first `backticked` word of a message.
fn backticked(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

#[cfg(test)]
pub(crate) mod tests {
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
        let mut docs =
            crate::desired::parse_str(FULL, std::path::Path::new("d.yaml")).expect("valid");
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
                retain_stacks_on_account_removal: true
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
    fn the_reference_document_of_the_brief_is_valid() {
        let reference = FULL
            .replace("  labels: {owner: finops}\n", "")
            .replace("DELEGATED_ADMIN", "SELF")
            .replace(
                "[CAPABILITY_NAMED_IAM, CAPABILITY_IAM]",
                "[CAPABILITY_NAMED_IAM]",
            )
            .replace("[ROOT, ou-ab12-cdef5678]", "[ROOT]")
            .replace("[\"000000000001\"]", "[]")
            .replace("DIFFERENCE", "NONE");
        assert_eq!(problems(&reference), Vec::new());
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
        assert!(
            <Deployment as serde::Deserialize>::deserialize(docs.next().expect("doc 1")).is_ok()
        );
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
}
