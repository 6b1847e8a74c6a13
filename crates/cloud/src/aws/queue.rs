//! The event queue on SQS: one long poll per receive, deletions in batches. Each call is counted (service `sqs`)
//! and its failure mapped like every other AWS call (an AccessDenied names the policy file that grants it).

use async_trait::async_trait;
use aws_config::Region;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use super::{AwsCloud, errors::Call, settle};
use crate::error::Error;
use crate::queue::{EventQueue, Message, RECEIVE_BATCH, RECEIVE_WAIT, SERVICE, parse_queue_url};
use crate::{CallCounter, Result};
use std::sync::Arc;

/// [`EventQueue`] over SQS.
#[derive(Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    calls: Arc<CallCounter>,
}

impl AwsCloud {
    /// The queue at `url`, read with the daemon's own credentials, in the Region the URL names (an emulator's
    /// URL names none: the SDK's), through `aws.endpoint_url` when set.
    pub fn event_queue(&self, url: &str) -> Result<SqsQueue> {
        let parsed =
            parse_queue_url(url).map_err(|e| Error::Settings(format!("events.queue_url: {e}")))?;
        let (sdk, settings) = self.base.as_ref().ok_or_else(|| {
            Error::Settings("events.queue_url needs the SDK's configuration".into())
        })?;
        let mut config = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(region) = parsed.region {
            config = config.region(Region::new(region));
        }
        if settings.endpoint_url.is_some() {
            config.set_endpoint_url(settings.endpoint_url.clone());
        }
        Ok(SqsQueue::from_client(
            aws_sdk_sqs::Client::from_conf(config.build()),
            url,
            self.calls.clone(),
        ))
    }
}

impl SqsQueue {
    /// Wrap a ready-made client (tests inject mocks here).
    pub fn from_client(
        client: aws_sdk_sqs::Client,
        url: &str,
        calls: Arc<CallCounter>,
    ) -> SqsQueue {
        SqsQueue {
            client,
            url: url.to_string(),
            calls,
        }
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    fn url(&self) -> &str {
        &self.url
    }

    async fn check(&self) -> Result<()> {
        let result = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await;
        settle(
            &self.calls,
            Call::service(SERVICE, "GetQueueAttributes"),
            result,
        )?;
        Ok(())
    }

    async fn receive(&self, wait: std::time::Duration) -> Result<Vec<Message>> {
        let result = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(RECEIVE_BATCH as i32)
            .wait_time_seconds(wait.min(RECEIVE_WAIT).as_secs() as i32)
            .send()
            .await;
        let output = settle(
            &self.calls,
            Call::service(SERVICE, "ReceiveMessage"),
            result,
        )?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some(Message {
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(RECEIVE_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let result = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            let output = settle(
                &self.calls,
                Call::service(SERVICE, "DeleteMessageBatch"),
                result,
            )?;
            if let Some(failed) = output.failed.first() {
                // A stale receipt (redelivered meanwhile) is one reason: the message comes back and is dropped
                // as a duplicate then.
                return Err(Error::Aws {
                    service: SERVICE,
                    operation: "DeleteMessageBatch",
                    kind: crate::error::AwsErrorKind::Other,
                    code: failed.code.clone(),
                    message: format!(
                        "{} of {} message(s) not deleted: {}",
                        output.failed.len(),
                        chunk.len(),
                        failed.message.clone().unwrap_or_default()
                    ),
                });
            }
        }
        Ok(())
    }
}
