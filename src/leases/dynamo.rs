//! The lease table on DynamoDB: each [`LeaseStore`] method is one conditional request (the scan, one request
//! per page), so the table's own conditional-write atomicity is what makes two replicas unable to both win.
//!
//! Every attribute name goes through an expression attribute name (`#owner`, ...): `owner` and `session` are
//! DynamoDB reserved words, and using placeholders everywhere keeps that from ever mattering. Only the names
//! and values an expression uses are sent, because DynamoDB refuses unused ones (ValidationException).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::store::{
    Acquire, Expect, LEASE_PREFIX, LeaseRecord, LeaseStore, REPLICA_PREFIX, SERVICE, SessionRecord,
    TableScan, Write,
};
use crate::cloud::CallCounter;
use crate::error::Error;

/// Attribute names of the table's items (the module docs of [`crate::leases`] describe them).
pub const PK: &str = "pk";
pub const SESSION: &str = "session";
pub const EXPIRES_AT: &str = "expires_at";
pub const HEARTBEAT_AT: &str = "heartbeat_at";
pub const OWNER: &str = "owner";
pub const REPLICA: &str = "replica";
pub const FENCE: &str = "fence";
pub const ACQUIRED_AT: &str = "acquired_at";

/// The DynamoDB error code of a condition that did not hold.
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// How to create the table, in the message of a missing table.
const SCHEMA_HINT: &str = "create it with partition key `pk` of type S (string) and no sort key, e.g. `aws dynamodb \
     create-table --table-name TABLE --attribute-definitions AttributeName=pk,AttributeType=S --key-schema \
     AttributeName=pk,KeyType=HASH --billing-mode PAY_PER_REQUEST`";

/// The lease table `table` through `client`.
#[derive(Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    calls: CallCounter,
}

impl DynamoStore {
    /// A store on the table named `table`, with the daemon's SDK configuration (credentials, Region, endpoint).
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> DynamoStore {
        DynamoStore::from_client(Client::new(config), table)
    }

    /// A store on a client built elsewhere (tests: a mocked client).
    pub fn from_client(client: Client, table: &str) -> DynamoStore {
        DynamoStore {
            client,
            table: table.to_string(),
            calls: CallCounter::default(),
        }
    }

    /// A conditional write's answer: a failed condition is [`Write::ConditionFailed`], other failures errors.
    fn written<T, E>(
        &self,
        action: &'static str,
        result: Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<Write, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(_) => {
                self.calls.record(SERVICE, action, "ok");
                Ok(Write::Applied)
            }
            Err(err) if err.code() == Some(CONDITION_FAILED) => {
                self.calls.record(SERVICE, action, "condition_failed");
                Ok(Write::ConditionFailed)
            }
            Err(err) => Err(self.failed(action, &err)),
        }
    }

    /// A read's answer.
    fn read<T, E>(
        &self,
        action: &'static str,
        result: Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match result {
            Ok(output) => {
                self.calls.record(SERVICE, action, "ok");
                Ok(output)
            }
            Err(err) => Err(self.failed(action, &err)),
        }
    }

    /// Count the failed call and say what to do about it.
    fn failed<E>(&self, action: &'static str, err: &SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.calls.record(SERVICE, action, "error");
        Error::Leases {
            table: self.table.clone(),
            message: table_error_message(action, err),
        }
    }
}

/// The message of a failed DynamoDB call: the action, and for the two failures an operator must fix, what to do.
pub fn table_error_message<E>(action: &str, err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let aws_message = err.message().unwrap_or("no message given");
    match err.code() {
        Some("ResourceNotFoundException") => format!(
            "DynamoDB {action}: the table does not exist (in this account and Region) and must be created: \
             {SCHEMA_HINT} ({aws_message})"
        ),
        Some(code) if code.contains("AccessDenied") => format!(
            "DynamoDB {action} was denied: the daemon's role needs dynamodb:{action} on the table ({code}: \
             {aws_message})"
        ),
        Some(code) => format!("DynamoDB {action} failed: {code}: {aws_message}"),
        None => format!("DynamoDB {action} failed: {}", crate::error::chain(err)),
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Expression attribute names from (placeholder, attribute) pairs.
fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn values(pairs: Vec<(&str, AttributeValue)>) -> HashMap<String, AttributeValue> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn key(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_string(), AttributeValue::S(pk))])
}

fn get_s(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// A heartbeat item, or `None` when it lacks a session or expiry: such an item is never a live session.
pub fn session_of(replica: &str, item: &HashMap<String, AttributeValue>) -> Option<SessionRecord> {
    Some(SessionRecord {
        replica: replica.to_string(),
        session: get_s(item, SESSION)?,
        expires_at_ms: get_n(item, EXPIRES_AT)?,
        heartbeat_at_ms: get_n(item, HEARTBEAT_AT).unwrap_or(0),
    })
}

/// A lease item, or `None` when its fence is missing or not a number. Skipping it is safe: every write is
/// conditional on the item's actual content, so a lease we cannot read is one we neither hold nor take.
pub fn lease_of(deployment: &str, item: &HashMap<String, AttributeValue>) -> Option<LeaseRecord> {
    Some(LeaseRecord {
        deployment: deployment.to_string(),
        owner: get_s(item, OWNER),
        replica: get_s(item, REPLICA),
        fence: get_n(item, FENCE)?,
        acquired_at_ms: get_n(item, ACQUIRED_AT),
    })
}

#[async_trait]
impl LeaseStore for DynamoStore {
    fn table(&self) -> &str {
        &self.table
    }

    async fn renew_session(
        &self,
        replica: &str,
        session: &str,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("{REPLICA_PREFIX}{replica}"))))
            .update_expression("SET #exp = :exp, #hb = :now")
            .condition_expression("#session = :mine AND #exp > :now")
            .set_expression_attribute_names(Some(names(&[
                ("#exp", EXPIRES_AT),
                ("#hb", HEARTBEAT_AT),
                ("#session", SESSION),
            ])))
            .set_expression_attribute_values(Some(values(vec![
                (":exp", n(expires_at_ms)),
                (":now", n(now_ms)),
                (":mine", s(session)),
            ])))
            .send()
            .await;
        self.written("UpdateItem", result)
    }

    async fn start_session(
        &self,
        replica: &str,
        session: &str,
        replaces: Option<&str>,
        now_ms: u64,
        expires_at_ms: u64,
    ) -> Result<Write, Error> {
        let mut condition = "attribute_not_exists(#pk) OR #exp < :now".to_string();
        let mut names_used = vec![("#pk", PK), ("#exp", EXPIRES_AT)];
        let mut values_used = vec![(":now", n(now_ms))];
        if let Some(previous) = replaces {
            condition.push_str(" OR #session = :previous");
            names_used.push(("#session", SESSION));
            values_used.push((":previous", s(previous)));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(&format!("{REPLICA_PREFIX}{replica}")))
            .item(SESSION, s(session))
            .item(EXPIRES_AT, n(expires_at_ms))
            .item(HEARTBEAT_AT, n(now_ms))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&names_used)))
            .set_expression_attribute_values(Some(values(values_used)))
            .send()
            .await;
        self.written("PutItem", result)
    }

    async fn end_session(&self, replica: &str, session: &str) -> Result<Write, Error> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("{REPLICA_PREFIX}{replica}"))))
            .condition_expression("#session = :mine")
            .set_expression_attribute_names(Some(names(&[("#session", SESSION)])))
            .set_expression_attribute_values(Some(values(vec![(":mine", s(session))])))
            .send()
            .await;
        self.written("DeleteItem", result)
    }

    async fn scan(&self) -> Result<TableScan, Error> {
        let mut scan = TableScan::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let result = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await;
            let page = self.read("Scan", result)?;
            for item in page.items() {
                let Some(pk) = get_s(item, PK) else { continue };
                if let Some(replica) = pk.strip_prefix(REPLICA_PREFIX) {
                    scan.sessions.extend(session_of(replica, item));
                } else if let Some(deployment) = pk.strip_prefix(LEASE_PREFIX) {
                    scan.leases.extend(lease_of(deployment, item));
                }
            }
            match page.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(scan),
            }
        }
    }

    async fn get_lease(&self, deployment: &str) -> Result<Option<LeaseRecord>, Error> {
        let result = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("{LEASE_PREFIX}{deployment}"))))
            .consistent_read(true)
            .send()
            .await;
        let output = self.read("GetItem", result)?;
        Ok(output.item().and_then(|item| lease_of(deployment, item)))
    }

    async fn acquire(&self, acquire: &Acquire) -> Result<Write, Error> {
        let pk = format!("{LEASE_PREFIX}{}", acquire.deployment);
        let fence = acquire.expect.next_fence();
        let (condition, seen) = match &acquire.expect {
            Expect::Absent => {
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .item(PK, s(&pk))
                    .item(OWNER, s(&acquire.session))
                    .item(REPLICA, s(&acquire.replica))
                    .item(FENCE, n(fence))
                    .item(ACQUIRED_AT, n(acquire.now_ms))
                    .condition_expression("attribute_not_exists(#pk)")
                    .set_expression_attribute_names(Some(names(&[("#pk", PK)])))
                    .send()
                    .await;
                return self.written("PutItem", result);
            }
            Expect::Free { fence } => (
                "attribute_not_exists(#owner) AND #fence = :seen_fence",
                vec![(":seen_fence", n(*fence))],
            ),
            Expect::Owned { owner, fence } => (
                "#owner = :seen_owner AND #fence = :seen_fence",
                vec![(":seen_owner", s(owner)), (":seen_fence", n(*fence))],
            ),
        };
        let mut values_used = vec![
            (":owner", s(&acquire.session)),
            (":replica", s(&acquire.replica)),
            (":fence", n(fence)),
            (":now", n(acquire.now_ms)),
        ];
        values_used.extend(seen);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .update_expression(
                "SET #owner = :owner, #replica = :replica, #fence = :fence, #acq = :now",
            )
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&[
                ("#owner", OWNER),
                ("#replica", REPLICA),
                ("#fence", FENCE),
                ("#acq", ACQUIRED_AT),
            ])))
            .set_expression_attribute_values(Some(values(values_used)))
            .send()
            .await;
        self.written("UpdateItem", result)
    }

    async fn release(&self, deployment: &str, session: &str, fence: u64) -> Result<Write, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("{LEASE_PREFIX}{deployment}"))))
            .update_expression("REMOVE #owner, #replica")
            .condition_expression("#owner = :mine AND #fence = :fence")
            .set_expression_attribute_names(Some(names(&[
                ("#owner", OWNER),
                ("#replica", REPLICA),
                ("#fence", FENCE),
            ])))
            .set_expression_attribute_values(Some(values(vec![
                (":mine", s(session)),
                (":fence", n(fence)),
            ])))
            .send()
            .await;
        self.written("UpdateItem", result)
    }

    fn calls(&self) -> &CallCounter {
        &self.calls
    }
}
