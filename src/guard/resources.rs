//! What each CloudFormation resource type can do: the guard's classification table.
//!
//! IAM identities and their policies are judged statement by statement (`model`, `judge`). Every other resource
//! is judged as a whole: adding or changing one that is not inert is a widening, because what it does is outside
//! the IAM policy language (a custom resource sends data to the vendor, a nested stack installs whatever its URL
//! serves at every deploy, a Lambda function runs the vendor's code). A type in no row is treated as able to do
//! anything.
//!
//! Size: over 600 lines: the one table of resource types, a row each, and its lookup.

/// What a resource type can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Roles, users, groups: they hold identity policies and, for roles, a trust policy.
    Identity,
    /// Inline and managed identity policies attached to identities.
    IdentityPolicy,
    /// A policy on a resource that can grant principals (other accounts included) access to it.
    ResourcePolicy,
    /// Issues or extends credentials: access keys, group memberships, identity providers, instance profiles.
    Credential,
    /// Runs or fetches code or templates: nested stacks, custom resources, functions, documents, macros.
    Executable,
    /// Sends data out: subscriptions, event rules, log subscriptions, trails, exports.
    DataExport,
    /// Holds no access and runs nothing.
    Inert,
    /// In no row of the table: treated as able to do anything.
    Unclassified,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::Identity => "IAM identity",
            Class::IdentityPolicy => "IAM identity policy",
            Class::ResourcePolicy => "resource policy",
            Class::Credential => "credential issuer",
            Class::Executable => "remote or executable content",
            Class::DataExport => "sends data out of the account",
            Class::Inert => "inert",
            Class::Unclassified => "unclassified: treated as able to do anything",
        }
    }

    /// Judged statement by statement rather than as a whole.
    pub fn is_iam(self) -> bool {
        matches!(self, Class::Identity | Class::IdentityPolicy)
    }
}

/// One row: a type (or a `prefix*`), its class, and what it does with `{Property}` placeholders filled from the
/// resolved properties.
pub struct Row {
    pub kind: &'static str,
    pub class: Class,
    pub does: &'static str,
    /// The property holding a resource policy document, for resource-policy holders.
    pub policy: Option<&'static str>,
}

const fn row(kind: &'static str, class: Class, does: &'static str) -> Row {
    Row {
        kind,
        class,
        does,
        policy: None,
    }
}

const fn policy_row(kind: &'static str, does: &'static str, policy: &'static str) -> Row {
    Row {
        kind,
        class: Class::ResourcePolicy,
        does,
        policy: Some(policy),
    }
}

use Class::*;

/// The table. Order matters only for prefixes (`Custom::*`): the first match wins.
pub const TABLE: &[Row] = &[
    row("AWS::IAM::Role", Identity, "an IAM role"),
    row("AWS::IAM::User", Identity, "an IAM user"),
    row("AWS::IAM::Group", Identity, "an IAM group"),
    row(
        "AWS::IAM::Policy",
        IdentityPolicy,
        "an inline policy for {Roles}{Users}{Groups}",
    ),
    row(
        "AWS::IAM::ManagedPolicy",
        IdentityPolicy,
        "a managed policy for {Roles}{Users}{Groups}",
    ),
    row(
        "AWS::IAM::RolePolicy",
        IdentityPolicy,
        "an inline policy of role {RoleName}",
    ),
    row(
        "AWS::IAM::UserPolicy",
        IdentityPolicy,
        "an inline policy of user {UserName}",
    ),
    row(
        "AWS::IAM::GroupPolicy",
        IdentityPolicy,
        "an inline policy of group {GroupName}",
    ),
    // Credential issuers.
    row(
        "AWS::IAM::AccessKey",
        Credential,
        "issues a long-lived access key for user {UserName}",
    ),
    row(
        "AWS::IAM::UserToGroupAddition",
        Credential,
        "adds users {Users} to group {GroupName}",
    ),
    row(
        "AWS::IAM::OIDCProvider",
        Credential,
        "trusts web identities issued by {Url}",
    ),
    row(
        "AWS::IAM::SAMLProvider",
        Credential,
        "trusts SAML assertions of identity provider {Name}",
    ),
    row(
        "AWS::IAM::InstanceProfile",
        Credential,
        "lets EC2 instances act as role {Roles}",
    ),
    row(
        "AWS::IAM::ServiceLinkedRole",
        Credential,
        "creates a service-linked role for {AWSServiceName}",
    ),
    row(
        "AWS::IAM::VirtualMFADevice",
        Credential,
        "creates an MFA device for users {Users}",
    ),
    row(
        "AWS::IAM::ServerCertificate",
        Credential,
        "uploads server certificate {ServerCertificateName}",
    ),
    row(
        "AWS::Cognito::IdentityPool",
        Credential,
        "hands out AWS credentials to application users",
    ),
    row(
        "AWS::Cognito::IdentityPoolRoleAttachment",
        Credential,
        "maps identity pool users to roles {Roles}",
    ),
    row(
        "AWS::RolesAnywhere::TrustAnchor",
        Credential,
        "lets certificate holders obtain AWS credentials",
    ),
    row(
        "AWS::RolesAnywhere::Profile",
        Credential,
        "lets certificate holders act as roles {RoleArns}",
    ),
    row(
        "AWS::SSO::*",
        Credential,
        "an IAM Identity Center assignment or permission set",
    ),
    row(
        "AWS::Config::AggregationAuthorization",
        Credential,
        "lets account {AuthorizedAccountId} collect this account's AWS Config data",
    ),
    row(
        "AWS::RAM::ResourceShare",
        Credential,
        "shares resources {ResourceArns} with {Principals}",
    ),
    // Resource policies.
    policy_row(
        "AWS::S3::BucketPolicy",
        "a bucket policy on {Bucket}",
        "PolicyDocument",
    ),
    policy_row(
        "AWS::S3::AccessPoint",
        "an access point to bucket {Bucket}",
        "Policy",
    ),
    policy_row(
        "AWS::S3::MultiRegionAccessPointPolicy",
        "a multi-Region access point policy",
        "Policy",
    ),
    policy_row(
        "AWS::S3Express::BucketPolicy",
        "a directory bucket policy on {Bucket}",
        "PolicyDocument",
    ),
    policy_row("AWS::KMS::Key", "a KMS key with a key policy", "KeyPolicy"),
    policy_row(
        "AWS::SNS::TopicPolicy",
        "a topic policy on {Topics}",
        "PolicyDocument",
    ),
    policy_row(
        "AWS::SNS::TopicInlinePolicy",
        "a topic policy on {TopicArn}",
        "PolicyDocument",
    ),
    policy_row(
        "AWS::SQS::QueuePolicy",
        "a queue policy on {Queues}",
        "PolicyDocument",
    ),
    policy_row(
        "AWS::SQS::QueueInlinePolicy",
        "a queue policy on {Queue}",
        "PolicyDocument",
    ),
    row(
        "AWS::Lambda::Permission",
        ResourcePolicy,
        "lets {Principal} call {Action} on function {FunctionName}",
    ),
    row(
        "AWS::Lambda::LayerVersionPermission",
        ResourcePolicy,
        "lets {Principal} use layer {LayerVersionArn}",
    ),
    policy_row(
        "AWS::SecretsManager::ResourcePolicy",
        "a policy on secret {SecretId}",
        "ResourcePolicy",
    ),
    policy_row(
        "AWS::ECR::Repository",
        "a container repository with a repository policy",
        "RepositoryPolicyText",
    ),
    policy_row(
        "AWS::ECR::RegistryPolicy",
        "a container registry policy",
        "PolicyText",
    ),
    policy_row(
        "AWS::ECR::RepositoryCreationTemplate",
        "a template of repository policies",
        "RepositoryPolicy",
    ),
    row(
        "AWS::Events::EventBusPolicy",
        ResourcePolicy,
        "lets {Principal} send events to bus {EventBusName}",
    ),
    policy_row(
        "AWS::Events::EventBus",
        "an event bus with a policy",
        "Policy",
    ),
    policy_row(
        "AWS::Logs::ResourcePolicy",
        "a CloudWatch Logs resource policy",
        "PolicyDocument",
    ),
    policy_row(
        "AWS::Logs::Destination",
        "a log destination",
        "DestinationPolicy",
    ),
    policy_row(
        "AWS::Backup::BackupVault",
        "a backup vault with an access policy",
        "AccessPolicy",
    ),
    policy_row(
        "AWS::OpenSearchService::Domain",
        "a search domain with an access policy",
        "AccessPolicies",
    ),
    policy_row(
        "AWS::Elasticsearch::Domain",
        "a search domain with an access policy",
        "AccessPolicies",
    ),
    policy_row(
        "AWS::ApiGateway::RestApi",
        "an API with a resource policy",
        "Policy",
    ),
    policy_row(
        "AWS::EFS::FileSystem",
        "a file system with a policy",
        "FileSystemPolicy",
    ),
    policy_row(
        "AWS::CodeArtifact::Domain",
        "an artifact domain with a policy",
        "PermissionsPolicyDocument",
    ),
    policy_row(
        "AWS::CodeArtifact::Repository",
        "an artifact repository with a policy",
        "PermissionsPolicyDocument",
    ),
    policy_row(
        "AWS::Glue::ResourcePolicy",
        "a Glue catalog policy",
        "PolicyInJson",
    ),
    policy_row("AWS::IoT::Policy", "an IoT policy", "PolicyDocument"),
    policy_row(
        "AWS::DynamoDB::Table",
        "a table (its contents, and a resource policy)",
        "ResourcePolicy",
    ),
    policy_row(
        "AWS::Kinesis::ResourcePolicy",
        "a stream policy",
        "ResourcePolicy",
    ),
    policy_row(
        "AWS::SecurityLake::SubscriberNotification",
        "a Security Lake subscriber",
        "NotificationConfiguration",
    ),
    // Remote or executable content.
    row(
        "AWS::CloudFormation::Stack",
        Executable,
        "installs the template at {TemplateURL}, which CloudFormation fetches at every deploy (each auto-deployment included)",
    ),
    row(
        "AWS::CloudFormation::StackSet",
        Executable,
        "creates a stack set from {TemplateURL} in other accounts",
    ),
    row(
        "AWS::CloudFormation::CustomResource",
        Executable,
        "sends data to {ServiceToken} (the resource's properties, the account and Region) at every create, update and delete",
    ),
    row(
        "Custom::*",
        Executable,
        "sends data to {ServiceToken} (the resource's properties, the account and Region) at every create, update and delete",
    ),
    row(
        "AWS::CloudFormation::Macro",
        Executable,
        "registers macro {Name}: function {FunctionName} rewrites templates",
    ),
    row(
        "AWS::CloudFormation::*",
        Executable,
        "registers or configures CloudFormation extensions (code that runs on deploys)",
    ),
    row(
        "AWS::Serverless::*",
        Executable,
        "a SAM resource, expanded by the AWS::Serverless transform",
    ),
    row(
        "AWS::Lambda::Function",
        Executable,
        "runs code from {Code} as role {Role}",
    ),
    row(
        "AWS::Lambda::LayerVersion",
        Executable,
        "publishes code from {Content}",
    ),
    row(
        "AWS::Lambda::Url",
        Executable,
        "exposes function {TargetFunctionArn} at a URL (auth {AuthType})",
    ),
    row(
        "AWS::Lambda::EventSourceMapping",
        Executable,
        "feeds {EventSourceArn} to function {FunctionName}",
    ),
    row(
        "AWS::Lambda::*",
        Executable,
        "configures how Lambda code runs",
    ),
    row(
        "AWS::SSM::Document",
        Executable,
        "defines a Systems Manager document (commands that can run on instances)",
    ),
    row(
        "AWS::SSM::Association",
        Executable,
        "runs document {Name} on {Targets}",
    ),
    row(
        "AWS::SSM::MaintenanceWindowTask",
        Executable,
        "runs {TaskArn} in a maintenance window",
    ),
    row(
        "AWS::SSM::ResourceDataSync",
        DataExport,
        "syncs inventory data to {S3Destination}",
    ),
    row(
        "AWS::EC2::Instance",
        Executable,
        "runs an EC2 instance (its user data runs at boot)",
    ),
    row(
        "AWS::EC2::LaunchTemplate",
        Executable,
        "a launch template (user data runs on every instance launched from it)",
    ),
    row(
        "AWS::AutoScaling::LaunchConfiguration",
        Executable,
        "a launch configuration (user data runs at boot)",
    ),
    row(
        "AWS::AutoScaling::AutoScalingGroup",
        Executable,
        "launches instances",
    ),
    row(
        "AWS::ECS::TaskDefinition",
        Executable,
        "defines containers to run",
    ),
    row("AWS::ECS::Service", Executable, "runs containers"),
    row(
        "AWS::StepFunctions::StateMachine",
        Executable,
        "runs a workflow as role {RoleArn}",
    ),
    row(
        "AWS::CodeBuild::Project",
        Executable,
        "runs builds from {Source}",
    ),
    row("AWS::Glue::Job", Executable, "runs job script {Command}"),
    row(
        "AWS::Batch::JobDefinition",
        Executable,
        "defines batch jobs",
    ),
    row(
        "AWS::Scheduler::Schedule",
        Executable,
        "invokes {Target} on schedule {ScheduleExpression}",
    ),
    row(
        "AWS::Events::Rule",
        DataExport,
        "sends matching events to {Targets}",
    ),
    row(
        "AWS::Events::ApiDestination",
        DataExport,
        "calls HTTP endpoint {InvocationEndpoint}",
    ),
    row(
        "AWS::Events::Connection",
        DataExport,
        "holds credentials for calling an HTTP endpoint",
    ),
    row("AWS::Pipes::Pipe", DataExport, "sends {Source} to {Target}"),
    // Data leaving the account.
    row(
        "AWS::SNS::Subscription",
        DataExport,
        "sends the messages of {TopicArn} to {Endpoint}",
    ),
    row(
        "AWS::SNS::Topic",
        DataExport,
        "a topic; its subscriptions {Subscription} receive what is published",
    ),
    row(
        "AWS::Logs::SubscriptionFilter",
        DataExport,
        "sends log events of {LogGroupName} to {DestinationArn}",
    ),
    row(
        "AWS::KinesisFirehose::DeliveryStream",
        DataExport,
        "delivers stream data to its destination",
    ),
    row(
        "AWS::CloudTrail::Trail",
        DataExport,
        "records the account's API activity to bucket {S3BucketName}",
    ),
    row(
        "AWS::Config::DeliveryChannel",
        DataExport,
        "delivers configuration history to bucket {S3BucketName}",
    ),
    row(
        "AWS::Config::ConfigurationRecorder",
        DataExport,
        "records resource configuration as role {RoleARN}",
    ),
    row(
        "AWS::CUR::ReportDefinition",
        DataExport,
        "delivers Cost and Usage Reports to bucket {S3Bucket}",
    ),
    row(
        "AWS::BCMDataExports::Export",
        DataExport,
        "exports billing data",
    ),
    row(
        "AWS::S3::Bucket",
        DataExport,
        "a bucket (its replication, notification and logging settings can send data out)",
    ),
    row(
        "AWS::CloudWatch::Alarm",
        DataExport,
        "an alarm that notifies {AlarmActions}",
    ),
    row(
        "AWS::Logs::Delivery",
        DataExport,
        "delivers logs to {DeliveryDestinationArn}",
    ),
    row(
        "AWS::Logs::DeliveryDestination",
        DataExport,
        "a log delivery destination",
    ),
    // No hand-written Inert rows: a type is inert only when data/resource-types.tsv, generated from its
    // resource provider schema, says so (see `inert_row`).
];

// The wildcard rows must come after the exact types they would otherwise swallow.
const _: () = assert!(TABLE.len() > 50);

/// Every resource type's schema-derived verdict (scripts/refresh-resource-types.py, from the resource provider
/// schemas cfn-lint ships): `inert` only when no property of the type's schema can carry a policy, a principal,
/// code, a URL, a command or a destination. Compiled in, like the action catalog.
const RESOURCE_TYPES_TSV: &str = include_str!("../../data/resource-types.tsv");

/// The row for a type the schema data proves inert, with the data's reason.
fn inert_row(kind: &str) -> Option<&'static Row> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static ROWS: OnceLock<HashMap<&'static str, Row>> = OnceLock::new();
    ROWS.get_or_init(|| {
        RESOURCE_TYPES_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut fields = l.splitn(3, '\t');
                let (kind, verdict) = (fields.next()?, fields.next()?);
                (verdict == "inert").then(|| {
                    let does: &'static str = Box::leak(
                        format!(
                            "{kind}: inert (its schema: {})",
                            fields.next().unwrap_or("")
                        )
                        .into_boxed_str(),
                    );
                    (kind, row(kind, Inert, does))
                })
            })
            .collect()
    })
    .get(kind)
}

/// The row for a type: its own row, else the schema data's inert verdict, else a prefix row (`Custom::*`);
/// `None`: in no row.
pub fn row_for(kind: &str) -> Option<&'static Row> {
    TABLE
        .iter()
        .find(|r| r.kind == kind)
        .or_else(|| inert_row(kind))
        .or_else(|| {
            TABLE.iter().find(|r| {
                r.kind
                    .strip_suffix('*')
                    .is_some_and(|prefix| kind.starts_with(prefix))
            })
        })
}

pub fn class_of(kind: &str) -> Class {
    row_for(kind).map_or(Class::Unclassified, |r| r.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_of_the_issue_has_its_rows() {
        for (kind, class) in [
            ("AWS::IAM::Role", Identity),
            ("AWS::IAM::ManagedPolicy", IdentityPolicy),
            ("AWS::IAM::AccessKey", Credential),
            ("AWS::IAM::UserToGroupAddition", Credential),
            ("AWS::S3::BucketPolicy", ResourcePolicy),
            ("AWS::KMS::Key", ResourcePolicy),
            ("AWS::SNS::TopicPolicy", ResourcePolicy),
            ("AWS::SQS::QueuePolicy", ResourcePolicy),
            ("AWS::Lambda::Permission", ResourcePolicy),
            ("AWS::CloudFormation::Stack", Executable),
            ("AWS::CloudFormation::StackSet", Executable),
            ("Custom::Register", Executable),
            ("AWS::CloudFormation::CustomResource", Executable),
            ("AWS::Lambda::Function", Executable),
            ("AWS::Lambda::LayerVersion", Executable),
            ("AWS::SSM::Document", Executable),
            ("AWS::CloudFormation::Macro", Executable),
            ("AWS::CloudFormation::WaitConditionHandle", Inert),
            ("AWS::ResourceGroups::Group", Inert),
            // A log group holds a resource policy (ResourcePolicyDocument): not inert, whatever its name suggests.
            ("AWS::Logs::LogGroup", Unclassified),
            ("AWS::SQS::Queue", Unclassified),
            ("AWS::EC2::VPC", Unclassified),
        ] {
            assert_eq!(class_of(kind), class, "{kind}");
        }
    }

    #[test]
    fn exact_rows_precede_the_prefixes_that_would_swallow_them() {
        for (i, r) in TABLE.iter().enumerate() {
            if let Some(prefix) = r.kind.strip_suffix('*') {
                for later in &TABLE[i + 1..] {
                    assert!(
                        !later.kind.starts_with(prefix) || later.class == r.class,
                        "{} is shadowed by {}",
                        later.kind,
                        r.kind
                    );
                }
            }
        }
    }
}
