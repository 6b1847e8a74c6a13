//! DynamoStore against aws-smithy-mocks clients: the expressions and values each call sends, a failed condition
//! as an answer (not an error), the two errors an operator must act on, pagination and call counting.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
use aws_sdk_dynamodb::operation::get_item::{GetItemError, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::scan::{ScanError, ScanOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::{ConditionalCheckFailedException, ResourceNotFoundException};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;

use super::dynamo::DynamoStore;
use super::store::{Acquire, Expect, LeaseStore, SERVICE, Write};
use crate::error::Error;

const TABLE: &str = "stacksetd-leases";

fn store(rules: &[&Rule]) -> DynamoStore {
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, rules, |c| c
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(1)
                .with_initial_backoff(Duration::from_millis(1))
        ));
    DynamoStore::from_client(client, TABLE)
}

fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn counted(store: &DynamoStore, operation: &'static str, outcome: &'static str) -> u64 {
    store
        .calls()
        .snapshot()
        .get(&(SERVICE, operation, outcome))
        .copied()
        .unwrap_or(0)
}

fn take_from(expect: Expect) -> Acquire {
    Acquire {
        deployment: "vendor-access".into(),
        expect,
        session: "0123456789abcdef".into(),
        replica: "replica-a".into(),
        now_ms: 1_000,
    }
}

fn value<'a>(
    values: Option<&'a HashMap<String, AttributeValue>>,
    key: &str,
) -> Option<&'a AttributeValue> {
    values?.get(key)
}

#[tokio::test]
async fn acquiring_from_a_dead_session_conditions_on_its_owner_and_fence() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| {
            let names = req.expression_attribute_names();
            let values = req.expression_attribute_values();
            req.table_name() == Some(TABLE)
                && req.key().and_then(|k| k.get("pk")) == Some(&s("lease#vendor-access"))
                && req.condition_expression()
                    == Some("#owner = :seen_owner AND #fence = :seen_fence")
                && names.and_then(|m| m.get("#owner")).map(String::as_str) == Some("owner")
                && names.and_then(|m| m.get("#fence")).map(String::as_str) == Some("fence")
                && value(values, ":seen_owner") == Some(&s("dead-session"))
                && value(values, ":seen_fence") == Some(&n(4))
                && value(values, ":fence") == Some(&n(5))
                && value(values, ":owner") == Some(&s("0123456789abcdef"))
                && value(values, ":replica") == Some(&s("replica-a"))
                && req
                    .update_expression()
                    .is_some_and(|e| e.contains("#owner = :owner") && e.contains("#fence = :fence"))
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let store = store(&[&rule]);
    let expect = Expect::Owned {
        owner: "dead-session".into(),
        fence: 4,
    };
    assert_eq!(
        store.acquire(&take_from(expect)).await.expect("sent"),
        Write::Applied
    );
    assert_eq!(rule.num_calls(), 1);
    assert_eq!(counted(&store, "UpdateItem", "ok"), 1);
}

#[tokio::test]
async fn acquiring_a_free_lease_conditions_on_no_owner_and_the_seen_fence() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| {
            let values = req.expression_attribute_values();
            req.condition_expression()
                == Some("attribute_not_exists(#owner) AND #fence = :seen_fence")
                && value(values, ":seen_fence") == Some(&n(7))
                && value(values, ":fence") == Some(&n(8))
                && value(values, ":seen_owner").is_none()
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let store = store(&[&rule]);
    let write = store.acquire(&take_from(Expect::Free { fence: 7 })).await;
    assert_eq!(write.expect("sent"), Write::Applied);
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn acquiring_an_absent_lease_puts_fence_one_if_not_exists() {
    let rule = mock!(aws_sdk_dynamodb::Client::put_item).match_requests(|req| {
        let item = req.item();
        req.condition_expression() == Some("attribute_not_exists(#pk)")
            && req.expression_attribute_names().and_then(|m| m.get("#pk")).map(String::as_str) == Some("pk")
            // DynamoDB refuses unused placeholders.
            && req.expression_attribute_values().is_none_or(|v| v.is_empty())
            && item.and_then(|i| i.get("pk")) == Some(&s("lease#vendor-access"))
            && item.and_then(|i| i.get("fence")) == Some(&n(1))
            && item.and_then(|i| i.get("owner")) == Some(&s("0123456789abcdef"))
    })
    .then_output(|| PutItemOutput::builder().build());
    let store = store(&[&rule]);
    assert_eq!(
        store
            .acquire(&take_from(Expect::Absent))
            .await
            .expect("sent"),
        Write::Applied
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn a_failed_condition_is_an_answer_not_an_error() {
    let rule = mock!(aws_sdk_dynamodb::Client::update_item).then_error(|| {
        UpdateItemError::ConditionalCheckFailedException(
            ConditionalCheckFailedException::builder()
                .meta(meta(
                    "ConditionalCheckFailedException",
                    "The conditional request failed",
                ))
                .build(),
        )
    });
    let store = store(&[&rule]);
    let write = store.release("vendor-access", "0123456789abcdef", 3).await;
    assert_eq!(write.expect("not an error"), Write::ConditionFailed);
    assert_eq!(counted(&store, "UpdateItem", "condition_failed"), 1);
    assert_eq!(counted(&store, "UpdateItem", "error"), 0);
}

#[tokio::test]
async fn a_missing_table_names_the_table_and_the_schema() {
    let rule = mock!(aws_sdk_dynamodb::Client::scan).then_error(|| {
        ScanError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .meta(meta(
                    "ResourceNotFoundException",
                    "Requested resource not found",
                ))
                .build(),
        )
    });
    let store = store(&[&rule]);
    let err = store.scan().await.expect_err("no table");
    let Error::Leases { table, message } = &err else {
        panic!("not a lease table error: {err}");
    };
    assert_eq!(table, TABLE);
    assert!(
        message.contains("Scan") && message.contains("does not exist"),
        "{message}"
    );
    assert!(
        message.contains("`pk`") && message.contains("type S"),
        "{message}"
    );
    assert!(err.to_string().contains(TABLE), "{err}");
    assert_eq!(counted(&store, "Scan", "error"), 1);
}

#[tokio::test]
async fn access_denied_names_the_iam_action() {
    let rule = mock!(aws_sdk_dynamodb::Client::get_item)
        .then_error(|| GetItemError::generic(meta("AccessDeniedException", "not authorized")));
    let store = store(&[&rule]);
    let err = store.get_lease("vendor-access").await.expect_err("denied");
    assert!(err.to_string().contains("dynamodb:GetItem"), "{err}");

    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .then_error(|| PutItemError::generic(meta("AccessDeniedException", "not authorized")));
    let store = self::store(&[&put]);
    let err = store
        .start_session("replica-a", "s", None, 1, 2)
        .await
        .expect_err("denied");
    assert!(err.to_string().contains("dynamodb:PutItem"), "{err}");
}

#[tokio::test]
async fn heartbeats_send_their_conditions() {
    let renew = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|req| {
            let values = req.expression_attribute_values();
            req.key().and_then(|k| k.get("pk")) == Some(&s("replica#replica-a"))
                && req.condition_expression() == Some("#session = :mine AND #exp > :now")
                && value(values, ":mine") == Some(&s("sess"))
                && value(values, ":now") == Some(&n(1_000))
                && value(values, ":exp") == Some(&n(31_000))
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let start = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(|req| {
            req.condition_expression()
                == Some("attribute_not_exists(#pk) OR #exp < :now OR #session = :previous")
                && value(req.expression_attribute_values(), ":previous") == Some(&s("old"))
                && req.item().and_then(|i| i.get("session")) == Some(&s("new"))
        })
        .then_output(|| PutItemOutput::builder().build());
    let end = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(|req| {
            req.condition_expression() == Some("#session = :mine")
                && value(req.expression_attribute_values(), ":mine") == Some(&s("new"))
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let store = store(&[&renew, &start, &end]);
    assert_eq!(
        store
            .renew_session("replica-a", "sess", 1_000, 31_000)
            .await
            .ok(),
        Some(Write::Applied)
    );
    let started = store
        .start_session("replica-a", "new", Some("old"), 2_000, 32_000)
        .await;
    assert_eq!(started.ok(), Some(Write::Applied));
    assert_eq!(
        store.end_session("replica-a", "new").await.ok(),
        Some(Write::Applied)
    );
    assert_eq!(
        (renew.num_calls(), start.num_calls(), end.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn the_scan_reads_every_page_consistently_and_skips_what_it_cannot_read() {
    let first = mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|req| {
            req.consistent_read() == Some(true) && req.exclusive_start_key().is_none()
        })
        .then_output(|| {
            ScanOutput::builder()
                .items(HashMap::from([
                    ("pk".into(), s("replica#replica-a")),
                    ("session".into(), s("sess-a")),
                    ("expires_at".into(), n(5_000)),
                    ("heartbeat_at".into(), n(2_000)),
                ]))
                .items(HashMap::from([
                    ("pk".into(), s("lease#vendor-access")),
                    ("owner".into(), s("sess-a")),
                    ("replica".into(), s("replica-a")),
                    ("fence".into(), n(3)),
                ]))
                .last_evaluated_key("pk", s("lease#vendor-access"))
                .build()
        });
    let second = mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|req| {
            req.consistent_read() == Some(true)
                && req.exclusive_start_key().and_then(|k| k.get("pk"))
                    == Some(&s("lease#vendor-access"))
        })
        .then_output(|| {
            ScanOutput::builder()
                // Free: no owner.
                .items(HashMap::from([
                    ("pk".into(), s("lease#audit")),
                    ("fence".into(), n(1)),
                ]))
                // No fence: not readable, skipped.
                .items(HashMap::from([
                    ("pk".into(), s("lease#broken")),
                    ("owner".into(), s("x")),
                ]))
                // Not ours to read.
                .items(HashMap::from([("pk".into(), s("something-else"))]))
                .build()
        });
    let store = store(&[&first, &second]);
    let scan = store.scan().await.expect("scan");
    assert_eq!(scan.sessions.len(), 1);
    assert_eq!(scan.sessions[0].replica, "replica-a");
    assert_eq!(scan.sessions[0].expires_at_ms, 5_000);
    let leases: Vec<(&str, Option<&str>, u64)> = scan
        .leases
        .iter()
        .map(|l| (l.deployment.as_str(), l.owner.as_deref(), l.fence))
        .collect();
    assert_eq!(
        leases,
        vec![("vendor-access", Some("sess-a"), 3), ("audit", None, 1)]
    );
    assert_eq!(counted(&store, "Scan", "ok"), 2);
}

#[tokio::test]
async fn get_lease_reads_consistently() {
    let rule = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(|req| {
            req.consistent_read() == Some(true)
                && req.key().and_then(|k| k.get("pk")) == Some(&s("lease#vendor-access"))
        })
        .then_output(|| {
            GetItemOutput::builder()
                .item("pk", s("lease#vendor-access"))
                .item("owner", s("sess-a"))
                .item("fence", n(9))
                .build()
        });
    let store = store(&[&rule]);
    let lease = store
        .get_lease("vendor-access")
        .await
        .expect("read")
        .expect("item");
    assert_eq!((lease.owner.as_deref(), lease.fence), (Some("sess-a"), 9));
}
