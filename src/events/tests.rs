//! Events as EventBridge delivers them (the envelopes of AWS's documentation, through SQS unchanged), what they say,
//! and whom they concern; and that nothing a sender writes into a body can do more than trigger a pass.

use proptest::prelude::*;

use super::*;
use crate::fixtures::OrgTree;
use stacksetd_core::fixtures::DeploymentYaml;

const ARN: &str = "arn:aws:cloudformation:us-east-1:111122223333:stackset/AimablyDataOnly:e5f54eea-d041-4444-9b0b-2f1a2d3e4f50";

fn envelope(source: &str, detail_type: &str, detail: &str) -> String {
    format!(
        r#"{{"version":"0","id":"4de89905-fd92-6a6b-9509-23c04bcb6a21","detail-type":"{detail_type}","source":"{source}","account":"111122223333","time":"2026-12-07T05:46:24Z","region":"us-east-1","resources":[],"detail":{detail}}}"#
    )
}

#[test]
fn stack_set_events_name_the_stack_set_and_the_operation() {
    let body = envelope(
        "aws.cloudformation",
        "CloudFormation StackSet Operation Status Change",
        &format!(
            r#"{{"stack-set-arn":"{ARN}","stack-set-operation-id":"op-1","status-details":{{"status":"SUCCEEDED"}}}}"#
        ),
    );
    let parsed = parse(&body).expect("read");
    assert_eq!(parsed.kind, "stack_set_operation");
    assert_eq!(
        parsed.event,
        Event::StackSet {
            name: "AimablyDataOnly".into(),
            operation_id: Some("op-1".into())
        }
    );
    assert_eq!(
        parsed.time,
        Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_622_384))
    );
    let status = envelope(
        "aws.cloudformation",
        "CloudFormation StackSet Status Change",
        &format!(r#"{{"stack-set-arn":"{ARN}","status-details":{{"status":"ACTIVE"}}}}"#),
    );
    assert_eq!(parse(&status).unwrap().kind, "stack_set_status");
}

#[test]
fn account_events_name_the_account_and_its_parents() {
    let moved = envelope(
        "aws.organizations",
        "AWS API Call via CloudTrail",
        r#"{"eventName":"MoveAccount","requestParameters":{"accountId":"222222222222","sourceParentId":"r-a1b2","destinationParentId":"ou-a1b2-prod0001"}}"#,
    );
    assert_eq!(
        parse(&moved).unwrap().event,
        Event::Account {
            account: Some("222222222222".into()),
            from: Some("r-a1b2".into()),
            to: Some("ou-a1b2-prod0001".into()),
            action: "MoveAccount",
        }
    );
    let created = envelope(
        "aws.organizations",
        "AWS Service Event via CloudTrail",
        r#"{"eventName":"CreateAccountResult","serviceEventDetails":{"createAccountStatus":{"accountId":"333333333333","state":"SUCCEEDED"}}}"#,
    );
    match parse(&created).unwrap().event {
        Event::Account {
            account, action, ..
        } => {
            assert_eq!(account.as_deref(), Some("333333333333"));
            assert_eq!(action, "CreateAccountResult");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_is_not_read_is_dropped_with_its_reason() {
    let cases = [
        ("not json", Dropped::Malformed),
        ("{}", Dropped::Malformed),
        (
            &envelope("aws.ec2", "EC2 Instance State-change Notification", "{}") as &str,
            Dropped::Unknown,
        ),
        (
            &envelope(
                "aws.cloudformation",
                "CloudFormation StackSet Operation Status Change",
                r#"{"stack-set-operation-id":"op-1"}"#,
            ),
            Dropped::Malformed,
        ),
        (
            &envelope(
                "aws.cloudformation",
                "CloudFormation StackSet Operation Status Change",
                r#"{"stack-set-arn":"arn:aws:s3:::bucket"}"#,
            ),
            Dropped::Malformed,
        ),
        (
            &envelope(
                "aws.organizations",
                "AWS API Call via CloudTrail",
                r#"{"eventName":"TagResource"}"#,
            ),
            Dropped::Unknown,
        ),
    ];
    for (body, reason) in cases {
        assert_eq!(parse(body), Err(reason), "{body}");
    }
}

fn deployment(name: &str, stack_set: &str, units: &[&str]) -> Deployment {
    DeploymentYaml::new()
        .name(name)
        .stack_set(stack_set)
        .targets(units, &["us-east-1"])
        .build()
}

#[test]
fn an_event_reaches_exactly_the_deployments_it_concerns() {
    let org = OrgTree::new("o-1", "111111111111", "r-a1b2")
        .unit("ou-a1b2-prod0001", "r-a1b2")
        .unit("ou-a1b2-team0001", "ou-a1b2-prod0001")
        .unit("ou-a1b2-dev00001", "r-a1b2")
        .account("222222222222", "ou-a1b2-team0001", "ACTIVE")
        .account("444444444444", "ou-a1b2-dev00001", "ACTIVE")
        .build();
    let prod = deployment("prod", "Prod", &["ou-a1b2-prod0001"]);
    let dev = deployment("dev", "Dev", &["ou-a1b2-dev00001"]);
    let all = [prod, dev];
    let names = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
    let stack_set = Event::StackSet {
        name: "Dev".into(),
        operation_id: None,
    };
    assert_eq!(names(route(&stack_set, &all, Some(&org))), ["dev"]);
    // A move from dev into a child OU of prod concerns both.
    let moved = Event::Account {
        account: Some("444444444444".into()),
        from: Some("ou-a1b2-dev00001".into()),
        to: Some("ou-a1b2-team0001".into()),
        action: "MoveAccount",
    };
    assert_eq!(names(route(&moved, &all, Some(&org))), ["dev", "prod"]);
    // A known account without parents in the event: by where the scan last saw it.
    let left = Event::Account {
        account: Some("222222222222".into()),
        from: None,
        to: None,
        action: "RemoveAccountFromOrganization",
    };
    assert_eq!(names(route(&left, &all, Some(&org))), ["prod"]);
    // Nothing to go by, or no organization scanned yet: every deployment looks.
    let unknown = Event::Account {
        account: Some("999999999999".into()),
        from: None,
        to: None,
        action: "AccountJoinedOrganization",
    };
    assert_eq!(names(route(&unknown, &all, Some(&org))), ["dev", "prod"]);
    assert_eq!(names(route(&moved, &all, None)), ["dev", "prod"]);
    // A parent the scan does not know yet (an OU created since) may be under any target.
    let into_new = Event::Account {
        account: None,
        from: None,
        to: Some("ou-a1b2-new00001".into()),
        action: "MoveAccount",
    };
    assert_eq!(names(route(&into_new, &all, Some(&org))), ["dev", "prod"]);
}

proptest! {
    /// Whatever a body holds, reading it is an answer, never a panic.
    #[test]
    fn any_body_is_read_or_dropped(body in ".{0,400}") {
        let _ = parse(&body);
    }

    /// Any JSON in an envelope's detail: read or dropped, never a panic.
    #[test]
    fn any_detail_is_read_or_dropped(
        key in "[a-zA-Z-]{1,24}",
        value in "[ -~]{0,60}",
        kind in 0usize..4,
    ) {
        let (source, detail_type) = [
            ("aws.cloudformation", "CloudFormation StackSet Operation Status Change"),
            ("aws.cloudformation", "CloudFormation StackSet Status Change"),
            ("aws.organizations", "AWS API Call via CloudTrail"),
            ("aws.organizations", "AWS Service Event via CloudTrail"),
        ][kind];
        let detail = serde_json::json!({ key: value, "eventName": value, "stack-set-arn": value }).to_string();
        let _ = parse(&envelope(source, detail_type, &detail));
    }
}

#[test]
fn the_test_envelopes_read_as_what_they_say() {
    let moved = parse(&envelopes::move_account(
        "e-1",
        "111111111111",
        "222222222222",
        "r-a1b2",
        "ou-a1b2-prod0001",
    ))
    .expect("read");
    assert_eq!(moved.id, "e-1");
    assert_eq!(moved.kind, "account");
    assert!(
        matches!(moved.event, Event::Account { action: "MoveAccount", ref to, .. } if to.as_deref() == Some("ou-a1b2-prod0001"))
    );
    let op = parse(&envelopes::stack_set_operation(
        "e-2", ARN, "op-9", "RUNNING",
    ))
    .expect("read");
    assert_eq!(
        op.event,
        Event::StackSet {
            name: "AimablyDataOnly".into(),
            operation_id: Some("op-9".into())
        }
    );
    assert!(op.time.is_some());
}

#[test]
fn the_queue_actions_are_what_the_queue_calls_need() {
    let needed: BTreeSet<&str> = ["ReceiveMessage", "DeleteMessageBatch", "GetQueueAttributes"]
        .into_iter()
        .map(|op| crate::cloud::queue::iam_action(crate::cloud::queue::SERVICE, op).expect("known"))
        .collect();
    let granted: BTreeSet<&str> = QUEUE_ACTIONS.iter().copied().collect();
    assert_eq!(needed, granted);
}
