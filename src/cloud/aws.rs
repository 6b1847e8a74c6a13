//! The AWS implementation of the cloud port (placeholder; being implemented).

/// Where and how to reach AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub max_attempts: u32,
}
