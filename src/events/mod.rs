//! Events from AWS (EventBridge, delivered through an SQS queue): what an event says, and which deployments it
//! concerns. Pure: the queue's reader (`daemon/events.rs`) calls [`parse`] on each message body and [`route`]
//! on what it says, notes it in the [`Ledger`], then triggers those deployments' passes. An event only ever triggers a
//! pass, which observes AWS itself: nothing is decided from an event alone, so a forged, duplicated or reordered
//! event costs a pass, never a change.
//!
//! The envelope is EventBridge's (`id`, `time`, `source`, `detail-type`, `detail`). Kinds read:
//! - `aws.cloudformation`: "CloudFormation StackSet Status Change", "CloudFormation StackSet Operation Status
//!   Change", "CloudFormation StackSet StackInstance Status Change" (`detail.stack-set-arn`);
//! - `aws.organizations` through CloudTrail ("AWS API Call via CloudTrail", `detail.eventName`): MoveAccount
//!   (`requestParameters.accountId`, `sourceParentId`, `destinationParentId`), CreateAccountResult
//!   (`serviceEventDetails.createAccountStatus.accountId`), InviteAccountToOrganization, AcceptHandshake,
//!   RemoveAccountFromOrganization, and the service events AccountJoinedOrganization and
//!   AccountDepartedOrganization.

pub mod envelopes;
pub mod ledger;

pub use ledger::{Ledger, Stamp};

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::Value;

use crate::cloud::org::OrgSnapshot;
use crate::desired::Deployment;

/// What an event says, as far as stacksetd cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stack set changed: its status, one of its operations, or one of its instances.
    StackSet {
        /// The stack set's name, from its ARN (`arn:<partition>:cloudformation:<region>:<account>:stackset/<name>:<id>`).
        name: String,
        /// The operation, for an operation's status change.
        operation_id: Option<String>,
    },
    /// An account joined, moved or left the organization. The parents are those the event names; a pass rescans
    /// the organization whatever they say.
    Account {
        account: Option<String>,
        from: Option<String>,
        to: Option<String>,
        /// The API call or service event (`MoveAccount`, ...).
        action: &'static str,
    },
}

/// One delivered event: EventBridge's id (for duplicates), its time (for the latency metric), what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub time: Option<SystemTime>,
    pub kind: &'static str,
    pub event: Event,
}

/// Why a message was dropped (the `reason` label of the dropped-events counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not JSON, or not an EventBridge envelope, or a known kind without the fields it must carry.
    Malformed,
    /// A well-formed event of a kind stacksetd does not read.
    Unknown,
    /// An id already seen (EventBridge and SQS deliver at least once).
    Duplicate,
}

impl Dropped {
    pub const ALL: [Dropped; 3] = [Dropped::Malformed, Dropped::Unknown, Dropped::Duplicate];

    pub const fn label(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Unknown => "unknown_type",
            Dropped::Duplicate => "duplicate",
        }
    }
}

/// The CloudFormation events read (source `aws.cloudformation`), as (detail-type, the `kind` label): the
/// EventBridge rule in deploy/events/ matches exactly these.
pub const STACK_SET_KINDS: [(&str, &str); 3] = [
    ("CloudFormation StackSet Status Change", "stack_set_status"),
    (
        "CloudFormation StackSet Operation Status Change",
        "stack_set_operation",
    ),
    (
        "CloudFormation StackSet StackInstance Status Change",
        "stack_instance",
    ),
];

/// The Organizations calls and service events read (source `aws.organizations`, `detail.eventName`): the
/// EventBridge rule in deploy/events/ matches exactly these.
pub const ACCOUNT_EVENTS: [&str; 7] = [
    "MoveAccount",
    "CreateAccountResult",
    "InviteAccountToOrganization",
    "AcceptHandshake",
    "RemoveAccountFromOrganization",
    "AccountJoinedOrganization",
    "AccountDepartedOrganization",
];

/// The SQS actions the daemon calls on the queue (ReceiveMessage long-polls, DeleteMessageBatch is authorised as
/// sqs:DeleteMessage, GetQueueAttributes checks the queue at start): deploy/iam/stacksetd-policy-events.json grants
/// exactly these, on the queue only.
pub const QUEUE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// Every `kind` label [`parse`] gives.
pub const KINDS: [&str; 4] = [
    "stack_set_status",
    "stack_set_operation",
    "stack_instance",
    "account",
];

/// Read one message body.
pub fn parse(body: &str) -> Result<Envelope, Dropped> {
    let value: Value = serde_json::from_str(body).map_err(|_| Dropped::Malformed)?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(id), Some(source), Some(detail_type), Some(detail)) = (
        text(&value, "id"),
        text(&value, "source"),
        text(&value, "detail-type"),
        value.get("detail").filter(|d| d.is_object()),
    ) else {
        return Err(Dropped::Malformed);
    };
    let time = text(&value, "time").and_then(|t| humantime::parse_rfc3339(&t).ok());
    let envelope = |kind, event| Envelope {
        id: id.clone(),
        time,
        kind,
        event,
    };
    match source.as_str() {
        "aws.cloudformation" => {
            let Some(&(_, kind)) = STACK_SET_KINDS.iter().find(|(t, _)| *t == detail_type) else {
                return Err(Dropped::Unknown);
            };
            let arn = text(detail, "stack-set-arn").ok_or(Dropped::Malformed)?;
            let name = stack_set_name(&arn).ok_or(Dropped::Malformed)?;
            let operation_id = text(detail, "stack-set-operation-id");
            Ok(envelope(kind, Event::StackSet { name, operation_id }))
        }
        "aws.organizations"
            if detail_type == "AWS API Call via CloudTrail"
                || detail_type.starts_with("AWS Service Event") =>
        {
            let name = text(detail, "eventName").ok_or(Dropped::Malformed)?;
            let Some(action) = ACCOUNT_EVENTS.iter().find(|a| **a == name) else {
                return Err(Dropped::Unknown);
            };
            let request = detail.get("requestParameters").unwrap_or(&Value::Null);
            let created = detail
                .pointer("/serviceEventDetails/createAccountStatus/accountId")
                .and_then(Value::as_str)
                .map(str::to_string);
            let account = text(request, "accountId")
                .or(created)
                .or_else(|| text(detail, "accountId"))
                .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
            Ok(envelope(
                "account",
                Event::Account {
                    account,
                    from: text(request, "sourceParentId"),
                    to: text(request, "destinationParentId"),
                    action,
                },
            ))
        }
        _ => Err(Dropped::Unknown),
    }
}

/// `arn:<partition>:cloudformation:<region>:<account>:stackset/<name>:<id>` -> `<name>`.
fn stack_set_name(arn: &str) -> Option<String> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let name = resource.strip_prefix("stackset/")?.split(':').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// The deployments an event concerns (by `metadata.name`):
/// - a stack set's event: the deployments of that stack set;
/// - an account's: the deployments whose targets contain the account's old or new parent (or the account
///   itself, by the organization as last scanned); every deployment when the event names neither parent nor a
///   known account, since the organization is rescanned by the pass anyway.
pub fn route<D: Borrow<Deployment>>(
    event: &Event,
    deployments: &[D],
    org: Option<&OrgSnapshot>,
) -> BTreeSet<String> {
    let deployments = deployments.iter().map(Borrow::borrow);
    let all = || deployments.clone().map(|d| d.name().to_string()).collect();
    match event {
        Event::StackSet { name, .. } => deployments
            .filter(|d| &d.spec.stack_set_name == name)
            .map(|d| d.name().to_string())
            .collect(),
        Event::Account {
            account, from, to, ..
        } => {
            let Some(org) = org else { return all() };
            let mut parents: BTreeSet<String> = [from, to].into_iter().flatten().cloned().collect();
            if let Some(known) = account.as_ref().and_then(|a| org.accounts.get(a)) {
                parents.insert(known.parent.clone());
            }
            if parents.is_empty() {
                return all();
            }
            deployments
                .filter(|d| {
                    let targets = crate::coverage::target_units(d, org);
                    parents.iter().any(|p| {
                        // A parent the scan does not know yet (a new OU) may be under any target.
                        !org.units.contains_key(p)
                            || targets.iter().any(|t| org.subtree(t).contains(p))
                    })
                })
                .map(|d| d.name().to_string())
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
