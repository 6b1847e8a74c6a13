//! deploy/events: the event feed's CloudFormation templates through cfn-lint (the virtualenv's, pinned beside moto)
//! and read as plain YAML (they use long-form intrinsics only), and the Terraform module read as text (terraform is
//! not available to the tests): the rules match exactly the events `stacksetd::events` reads, only EventBridge may
//! send to the queue and only for those rules, and the daemon is granted exactly `QUEUE_ACTIONS`, nowhere more.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};
use stacksetd::events::{ACCOUNT_EVENTS, QUEUE_ACTIONS, STACK_SET_KINDS};

use super::*;
use crate::common;

const TEMPLATE: &str = "deploy/events/stacksetd-events.yaml";
const FORWARDER: &str = "deploy/events/stacksetd-events-forwarder.yaml";
const TERRAFORM: &str = "deploy/events/terraform";
const IAM_POLICY: &str = "deploy/iam/stacksetd-policy-events.json";
/// The CloudTrail detail-types the Organizations events come as (API calls; CreateAccountResult and the
/// Account{Joined,Departed}Organization service events).
const ORGANIZATIONS_DETAIL_TYPES: [&str; 2] = [
    "AWS API Call via CloudTrail",
    "AWS Service Event via CloudTrail",
];

fn template(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| {
        panic!("{path} is not plain YAML (long-form intrinsics only, no `!Ref`): {e}")
    })
}

/// The cfn-lint beside the virtualenv's Python (`$STACKSETD_TEST_PYTHON` or ./.venv/bin/python). Panics, naming the
/// setup script, when it is missing: the test fails, never skips.
fn cfn_lint() -> PathBuf {
    let python = common::python();
    let lint = python
        .parent()
        .expect("the Python is in a directory")
        .join("cfn-lint");
    assert!(
        lint.exists(),
        "no cfn-lint at {} (the virtualenv pins it beside moto): run scripts/setup-moto.sh",
        lint.display()
    );
    lint
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what}: not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// The list's items as a set, refusing duplicates.
fn set(v: &Value, what: &str) -> BTreeSet<String> {
    let list = strings(v, what);
    let set: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(
        set.len(),
        list.len(),
        "{what}: an item listed twice: {list:?}"
    );
    set
}

fn owned(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The template's resources of one type, by logical id.
fn resources<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("a Resources map")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// The Organizations rule's pattern: CloudTrail's Organizations events, exactly the account events read.
fn assert_organizations_pattern(file: &str, id: &str, pattern: &Value) {
    assert_eq!(
        strings(&pattern["source"], "source"),
        ["aws.organizations"],
        "{file} {id}"
    );
    assert_eq!(
        set(&pattern["detail-type"], &format!("{file} {id} detail-type")),
        owned(&ORGANIZATIONS_DETAIL_TYPES),
        "{file} {id}: the CloudTrail detail-types"
    );
    assert_eq!(
        strings(&pattern["detail"]["eventSource"], "eventSource"),
        ["organizations.amazonaws.com"],
        "{file} {id}"
    );
    assert_eq!(
        set(
            &pattern["detail"]["eventName"],
            &format!("{file} {id} eventName")
        ),
        owned(&ACCOUNT_EVENTS),
        "{file} {id}: the event names and stacksetd::events::ACCOUNT_EVENTS disagree"
    );
}

#[test]
fn the_event_templates_pass_cfn_lint() {
    let output = Command::new(cfn_lint())
        .args([repo(TEMPLATE), repo(FORWARDER)])
        .output()
        .expect("cfn-lint runs");
    assert!(
        output.status.success(),
        "cfn-lint (exit {:?}) finds problems in deploy/events:\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rules_match_exactly_the_events_stacksetd_reads_and_only_they_may_send_to_the_queue() {
    let t = template(TEMPLATE);
    let queue_arn = json!({"Fn::GetAtt": ["Queue", "Arn"]});

    // The queue: encrypted, long-polled, a redrive to the dead-letter queue.
    let queue = &t["Resources"]["Queue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let props = &queue["Properties"];
    assert_eq!(
        props["SqsManagedSseEnabled"], true,
        "SSE with SQS-managed keys"
    );
    assert_eq!(props["ReceiveMessageWaitTimeSeconds"], 20, "long polling");
    assert_eq!(props["VisibilityTimeout"], 60);
    assert_eq!(
        props["RedrivePolicy"]["deadLetterTargetArn"],
        json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    );
    assert!(!props["RedrivePolicy"]["maxReceiveCount"].is_null());
    assert_eq!(
        t["Resources"]["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"],
        true
    );

    // Every rule targets the queue, unchanged (no input transformer: the body is the whole envelope).
    let rules = resources(&t, "AWS::Events::Rule");
    let ids: BTreeSet<&str> = rules.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["StackSetRule", "OrganizationsRule"]));
    for (id, rule) in &rules {
        let targets = rule["Properties"]["Targets"].as_array().expect("Targets");
        assert_eq!(targets.len(), 1, "{id}: one target");
        assert_eq!(targets[0]["Arn"], queue_arn, "{id} sends to the queue");
        for transform in ["Input", "InputPath", "InputTransformer"] {
            assert!(
                targets[0].get(transform).is_none(),
                "{id}: {transform} would change the envelope stacksetd parses"
            );
        }
        assert_eq!(rule["Properties"]["State"], "ENABLED", "{id}");
    }

    let stack_sets = &t["Resources"]["StackSetRule"]["Properties"]["EventPattern"];
    assert_eq!(
        strings(&stack_sets["source"], "source"),
        ["aws.cloudformation"]
    );
    let kinds: BTreeSet<String> = STACK_SET_KINDS.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(
        set(&stack_sets["detail-type"], "StackSetRule detail-type"),
        kinds,
        "the detail-types and stacksetd::events::STACK_SET_KINDS disagree"
    );
    assert!(
        stack_sets.get("detail").is_none(),
        "every stack set's events: stacksetd routes them itself"
    );

    let organizations = &t["Resources"]["OrganizationsRule"];
    assert_organizations_pattern(
        TEMPLATE,
        "OrganizationsRule",
        &organizations["Properties"]["EventPattern"],
    );
    assert_eq!(
        organizations["Condition"], "OrganizationsRule",
        "created only when the stack says where Organizations events arrive"
    );
    assert!(
        t["Rules"]["LocalOrganizationsEventsArriveOnlyInUsEast1"]["Assertions"][0]["Assert"]
            == json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}),
        "Local refused outside us-east-1"
    );

    // Only EventBridge may send, only SendMessage, only to this queue, only for these rules.
    let policies = resources(&t, "AWS::SQS::QueuePolicy");
    assert_eq!(policies.len(), 1, "one queue policy");
    let policy = &policies[0].1["Properties"];
    assert_eq!(policy["Queues"], json!([{"Ref": "Queue"}]));
    let statements = policy["PolicyDocument"]["Statement"]
        .as_array()
        .expect("Statement");
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Principal"], json!({"Service": "events.amazonaws.com"}));
    assert_eq!(s["Action"], "sqs:SendMessage");
    assert_eq!(s["Resource"], queue_arn);
    let source_arns = s["Condition"]["ArnEquals"]["aws:SourceArn"]
        .as_array()
        .expect("an aws:SourceArn condition (ArnEquals, a list)");
    assert_eq!(
        source_arns,
        &vec![
            json!({"Fn::GetAtt": ["StackSetRule", "Arn"]}),
            json!({"Fn::If": ["OrganizationsRule", {"Fn::GetAtt": ["OrganizationsRule", "Arn"]}, {"Ref": "AWS::NoValue"}]}),
        ],
        "each rule, and nothing else, named in aws:SourceArn"
    );

    // Forwarded: the management account may put events on this account's default bus.
    let bus = &t["Resources"]["ForwardedEventsBusPolicy"];
    assert_eq!(bus["Type"], "AWS::Events::EventBusPolicy");
    assert_eq!(bus["Condition"], "AcceptForwardedEvents");
    assert_eq!(bus["Properties"]["Statement"]["Action"], "events:PutEvents");
    assert_eq!(
        bus["Properties"]["Statement"]["Principal"]["AWS"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${ManagementAccountId}:root"})
    );

    for output in ["QueueUrl", "QueueArn", "SettingsLine"] {
        assert!(
            t["Outputs"].get(output).is_some(),
            "{TEMPLATE}: output {output}"
        );
    }
    assert_eq!(
        t["Outputs"]["SettingsLine"]["Value"],
        json!({"Fn::Sub": "events: {queue_url: ${Queue}}"}),
        "the settings line names events.queue_url"
    );
}

/// The ready-to-paste lines the stack (and the Terraform module) output load, through stacksetd's own settings
/// loader, as `events.queue_url`.
#[test]
fn the_settings_lines_the_outputs_give_load_as_events_queue_url() {
    let t = template(TEMPLATE);
    let url = "https://sqs.eu-west-1.amazonaws.com/111111111111/stacksetd-events";
    let line = |output: &str| {
        t["Outputs"][output]["Value"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{TEMPLATE}: output {output} is a Fn::Sub"))
            .replace("${Queue}", url)
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("stacksetd.yaml");
    std::fs::write(&file, format!("{}\n", line("SettingsLine"))).expect("written");
    let settings = Settings::load_from(Some(&file), &Overrides::default(), vec![])
        .unwrap_or_else(|e| panic!("the SettingsLine output does not load: {e}"));
    assert_eq!(settings.events.queue_url.as_deref(), Some(url));

    let env = line("EnvironmentLine");
    let (name, value) = env.split_once('=').expect("NAME=value");
    let settings = settings_with_env(&[(name.into(), value.into())])
        .unwrap_or_else(|e| panic!("the EnvironmentLine output does not load: {e}"));
    assert_eq!(settings.events.queue_url.as_deref(), Some(url));

    let outputs = read(&format!("{TERRAFORM}/outputs.tf"));
    for expected in [
        "\"events: {queue_url: ${aws_sqs_queue.events.url}}\"",
        "\"STACKSETD_EVENTS__QUEUE_URL=${aws_sqs_queue.events.url}\"",
    ] {
        assert!(
            outputs.contains(expected),
            "{TERRAFORM}/outputs.tf gives {expected}"
        );
    }
}

#[test]
fn the_forwarder_sends_the_same_organizations_events_to_stacksetds_bus_through_a_role() {
    let t = template(FORWARDER);
    let rules = resources(&t, "AWS::Events::Rule");
    assert_eq!(rules.len(), 1, "{FORWARDER}: one rule");
    let (id, rule) = rules[0];
    assert_organizations_pattern(FORWARDER, id, &rule["Properties"]["EventPattern"]);
    let targets = rule["Properties"]["Targets"].as_array().expect("Targets");
    assert_eq!(targets.len(), 1);
    let bus = json!({"Fn::Sub": "arn:${AWS::Partition}:events:${DaemonRegion}:${DaemonAccountId}:event-bus/default"});
    assert_eq!(targets[0]["Arn"], bus, "stacksetd's default bus");
    assert_eq!(
        targets[0]["RoleArn"],
        json!({"Fn::GetAtt": ["ForwardRole", "Arn"]})
    );
    let role = &t["Resources"]["ForwardRole"]["Properties"];
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    let granted = &role["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(granted.as_array().map(Vec::len), Some(1));
    assert_eq!(granted[0]["Action"], "events:PutEvents");
    assert_eq!(granted[0]["Resource"], bus, "PutEvents on that bus only");
    assert_eq!(
        t["Rules"]["OrganizationsEventsArriveOnlyInUsEast1"]["Assertions"][0]["Assert"],
        json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}),
        "refused outside us-east-1"
    );
}

/// The strings of the HCL list `name = [ ... ]` in `text` (a list of string literals, as the module writes them).
fn hcl_list(text: &str, file: &str, name: &str) -> BTreeSet<String> {
    let start = text
        .lines()
        .position(|l| {
            l.trim()
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with("= ["))
        })
        .unwrap_or_else(|| panic!("{file}: no list {name}"));
    let mut items = Vec::new();
    for line in text.lines().skip(start + 1) {
        let line = line.trim();
        if line.starts_with(']') {
            let set: BTreeSet<String> = items.iter().cloned().collect();
            assert_eq!(
                set.len(),
                items.len(),
                "{file} {name}: an item listed twice"
            );
            return set;
        }
        let item = line
            .strip_suffix(',')
            .unwrap_or(line)
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{file} {name}: not a string literal: {line}"));
        items.push(item.to_string());
    }
    panic!("{file}: {name} is not closed")
}

/// Every SQS action named in `text` (`sqs:` in any case followed by a name or a wildcard; not the `:sqs:` of an
/// ARN), as written.
fn sqs_actions(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    lower
        .match_indices("sqs:")
        .filter(|(at, _)| {
            let before = lower[..*at].chars().next_back();
            let after = lower[at + 4..].chars().next();
            !before.is_some_and(|c| c == ':' || c.is_ascii_alphanumeric())
                && after.is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '*' | '?'))
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '*' | '?'))
                .collect()
        })
        .collect()
}

#[test]
fn terraform_names_the_same_events_and_grants_the_queue_actions_and_nothing_broader() {
    let main = format!("{TERRAFORM}/main.tf");
    let forwarder = format!("{TERRAFORM}/forwarder/main.tf");
    for file in [
        main.clone(),
        format!("{TERRAFORM}/variables.tf"),
        format!("{TERRAFORM}/outputs.tf"),
        forwarder.clone(),
        format!("{TERRAFORM}/forwarder/variables.tf"),
        format!("{TERRAFORM}/forwarder/outputs.tf"),
    ] {
        assert!(repo(&file).is_file(), "{file} exists");
    }
    let text = read(&main);
    let kinds: BTreeSet<String> = STACK_SET_KINDS.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(
        hcl_list(&text, &main, "stack_set_detail_types"),
        kinds,
        "{main}: the detail-types and stacksetd::events::STACK_SET_KINDS disagree"
    );
    for file in [&main, &forwarder] {
        let text = read(file);
        assert_eq!(
            hcl_list(&text, file, "account_event_names"),
            owned(&ACCOUNT_EVENTS),
            "{file}: the event names and stacksetd::events::ACCOUNT_EVENTS disagree"
        );
        assert_eq!(
            hcl_list(&text, file, "organizations_detail_types"),
            owned(&ORGANIZATIONS_DETAIL_TYPES),
            "{file}"
        );
        assert!(
            text.contains("source        = [\"aws.organizations\"]")
                && text.contains("eventSource = [\"organizations.amazonaws.com\"]")
                && text.contains("eventName   = local.account_event_names"),
            "{file}: the Organizations pattern uses the lists"
        );
    }
    assert!(
        text.contains("\"detail-type\" = local.stack_set_detail_types"),
        "{main}: the StackSet pattern uses the list"
    );
    assert_eq!(
        hcl_list(&text, &main, "daemon_queue_actions"),
        owned(QUEUE_ACTIONS),
        "{main}: the daemon's grant and stacksetd::events::QUEUE_ACTIONS disagree"
    );
    assert!(
        text.contains("identifiers = [\"events.amazonaws.com\"]")
            && text.contains("variable = \"aws:SourceArn\""),
        "{main}: the queue policy lets EventBridge send for the rules only"
    );

    // The three actions nowhere broader: every SQS action any event artifact names is one of them, or the
    // SendMessage EventBridge is allowed; none is a wildcard.
    let mut allowed = owned(QUEUE_ACTIONS);
    allowed.insert("sqs:SendMessage".into());
    let mut files = vec![
        TEMPLATE.to_string(),
        FORWARDER.to_string(),
        IAM_POLICY.to_string(),
    ];
    for dir in [TERRAFORM.to_string(), format!("{TERRAFORM}/forwarder")] {
        let mut tf: Vec<String> = std::fs::read_dir(repo(&dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("an entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "tf"))
            .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
            .collect();
        tf.sort();
        files.extend(tf);
    }
    let mut seen = BTreeSet::new();
    for file in &files {
        for action in sqs_actions(&read(file)) {
            seen.insert(action.clone());
            assert!(
                !action.contains(['*', '?']) && allowed.contains(&action),
                "{file}: {action} (only {allowed:?}, never a wildcard)"
            );
        }
    }
    assert_eq!(seen, allowed, "the scan saw each action somewhere");
    // The CloudFormation template's optional daemon policy grants exactly the three, on the queue.
    let t = template(TEMPLATE);
    let daemon = &t["Resources"]["DaemonQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"];
    assert_eq!(daemon.as_array().map(Vec::len), Some(1));
    assert_eq!(daemon[0]["Sid"], "EventQueue");
    assert_eq!(
        set(&daemon[0]["Action"], "DaemonQueuePolicy Action"),
        owned(QUEUE_ACTIONS)
    );
    assert_eq!(
        daemon[0]["Resource"],
        json!({"Fn::GetAtt": ["Queue", "Arn"]})
    );
}
