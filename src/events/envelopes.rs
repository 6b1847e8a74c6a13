//! Events as EventBridge delivers them to the queue (the envelope unchanged: `version`, `id`, `detail-type`,
//! `source`, `account`, `time`, `region`, `resources`, `detail`), for the tests and the moto end-to-end runs:
//! the shapes of AWS's documentation (CloudFormation StackSets events; Organizations' CloudTrail events).

use serde_json::{Value, json};

/// The envelope around `detail`.
pub fn envelope(id: &str, source: &str, detail_type: &str, account: &str, detail: Value) -> String {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

/// "CloudFormation StackSet Operation Status Change" for an operation of the stack set `arn`.
pub fn stack_set_operation(id: &str, arn: &str, operation_id: &str, status: &str) -> String {
    let account = arn.split(':').nth(4).unwrap_or("111111111111");
    envelope(
        id,
        "aws.cloudformation",
        "CloudFormation StackSet Operation Status Change",
        account,
        json!({
            "stack-set-arn": arn,
            "stack-set-operation-id": operation_id,
            "action": "CREATE",
            "status-details": {"status": status},
        }),
    )
}

/// MoveAccount through CloudTrail, as the management account's EventBridge sees it.
pub fn move_account(id: &str, management: &str, account: &str, from: &str, to: &str) -> String {
    envelope(
        id,
        "aws.organizations",
        "AWS API Call via CloudTrail",
        management,
        json!({
            "eventSource": "organizations.amazonaws.com",
            "eventName": "MoveAccount",
            "requestParameters": {
                "accountId": account,
                "sourceParentId": from,
                "destinationParentId": to,
            },
        }),
    )
}
