//! The real cloud port: CloudFormation StackSets, Organizations and STS through the AWS SDK for Rust.
//!
//! Each `Cloud` method is one API operation (listings follow every page). Every request page is recorded in the
//! [`CallCounter`] with its outcome, and every failure becomes [`Error::Aws`] through one mapping (`errors.rs`),
//! so the controller never sees SDK types. Request/response translation lives in `convert.rs`.
//!
//! Size: over 700 lines, one `impl Cloud for AwsCloud`: each method is a thin adapter (build, send, count, map),
//! and the trait requires them in one impl block.

mod convert;
pub mod errors;
mod queue;
mod role;
mod stacks;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::types::PermissionModels;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;

use crate::error::Error;
use crate::{
    AccessVerdict, Account, AutoDeploymentTarget, CallAs, CallCounter, Cloud, Connector,
    CreateStackSet, DeleteInstancesRequest, DetectDriftRequest, InstancesRequest, ObservedStackSet,
    Operation, OperationResult, OrgNode, OrganizationInfo, PolicyKind, Result, RoleToAssume,
    StackInstance, UpdateStackSet,
};
use crate::{DeleteStackRequest, ObservedStack, StackRequest};
use errors::{Call, malformed, map_sdk_error};
pub use queue::SqsQueue;

/// Attempts per API call (first try included) unless the settings say otherwise. Throttling is the usual reason
/// to retry; adaptive retry also slows the client down when AWS throttles.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// ListStackInstances and ListStackSetOperations(Results) page size: the API's maximum, fewest calls.
const CLOUDFORMATION_PAGE_SIZE: i32 = crate::CLOUDFORMATION_PAGE as i32;

/// Organizations listings page size: the API's maximum.
const ORGANIZATIONS_PAGE_SIZE: i32 = 20;

/// The Organizations endpoint of the commercial partition is global and signs for this Region.
const ORGANIZATIONS_GLOBAL_REGION: &str = "us-east-1";

/// Per-service endpoint variable the SDK honours for Organizations (read here only to know whether it is set).
const ORGANIZATIONS_ENDPOINT_ENV: &str = "AWS_ENDPOINT_URL_ORGANIZATIONS";

/// Setting that makes the SDK ignore endpoint URLs configured in the environment.
const IGNORE_ENDPOINTS_ENV: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";

/// Outcome label of a successful call in the call counter.
const OK: &str = "ok";

/// The daemon's `aws.*` settings. Credentials never appear here: they come from the standard AWS chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AwsSettings {
    /// Overrides the Region from the environment or profile.
    pub region: Option<String>,
    /// Sends every service's requests to this URL (moto, LocalStack, a VPC endpoint). `AWS_ENDPOINT_URL` and
    /// `AWS_ENDPOINT_URL_<SERVICE>` in the environment work without it: the SDK reads them itself.
    pub endpoint_url: Option<String>,
    /// Attempts per API call, the first included.
    pub max_attempts: u32,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// [`Cloud`] over the AWS SDK.
#[derive(Debug)]
pub struct AwsCloud {
    cfn: aws_sdk_cloudformation::Client,
    orgs: aws_sdk_organizations::Client,
    sts: aws_sdk_sts::Client,
    /// Only used with a staging bucket.
    s3: Option<aws_sdk_s3::Client>,
    /// Only used with `accessAnalyzer: true`.
    analyzer: Option<aws_sdk_accessanalyzer::Client>,
    /// The Region of the clients: staged template URLs name it.
    region: String,
    /// Shared with the clouds made from this one for `spec.credentials`, so the metrics count every call.
    calls: Arc<CallCounter>,
    /// The daemon's own configuration and settings, from which roles are assumed (`Connector`); None for
    /// clients injected by tests.
    base: Option<(SdkConfig, AwsSettings)>,
    /// Set when this cloud acts as an assumed role.
    role: Option<Arc<role::AssumedRole>>,
}

impl AwsCloud {
    /// Clients from the standard AWS configuration chain (env, profile, SSO, IMDS, web identity), with the
    /// settings' overrides and adaptive retry. Credentials are resolved lazily, on the first call.
    pub async fn connect(settings: &AwsSettings) -> Result<AwsCloud, Error> {
        if settings.max_attempts == 0 {
            return Err(Error::Settings(
                "aws.max_attempts must be at least 1 (it counts the first attempt)".to_string(),
            ));
        }
        // The SDK reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself: held to the same rule as
        // aws.endpoint_url (https, or http to this machine).
        for (name, value) in std::env::vars() {
            if name == "AWS_ENDPOINT_URL" || name.starts_with("AWS_ENDPOINT_URL_") {
                crate::endpoint::check_endpoint_named(&name, &value)?;
            }
        }
        if let Some(endpoint) = &settings.endpoint_url {
            crate::endpoint::check_endpoint(endpoint)?;
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config(settings.max_attempts))
            .timeout_config(timeout_config());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::Settings(
                "no AWS Region: set aws.region, AWS_REGION, or a region in the AWS profile"
                    .to_string(),
            ));
        }
        let mut cloud = Self::from_sdk(&sdk, settings, Arc::default());
        cloud.base = Some((sdk, settings.clone()));
        Ok(cloud)
    }

    /// Every client from one SDK configuration (the daemon's own, or one whose credentials are a role's).
    fn from_sdk(sdk: &SdkConfig, settings: &AwsSettings, calls: Arc<CallCounter>) -> AwsCloud {
        // The settings' endpoint is set on each client, not on the shared loader: there it would lose to
        // AWS_ENDPOINT_URL_<SERVICE> variables, and the daemon's own setting should be the last word.
        let endpoint = settings.endpoint_url.clone();
        let mut cfn_config = aws_sdk_cloudformation::config::Builder::from(sdk);
        let mut orgs_config = aws_sdk_organizations::config::Builder::from(sdk);
        if endpoint.is_some() {
            cfn_config.set_endpoint_url(endpoint.clone());
            orgs_config.set_endpoint_url(endpoint.clone());
        } else if !organizations_endpoint_configured(sdk) {
            orgs_config = orgs_config.region(organizations_region(sdk.region()));
        }
        let mut s3_config = aws_sdk_s3::config::Builder::from(sdk);
        let mut analyzer_config = aws_sdk_accessanalyzer::config::Builder::from(sdk);
        if endpoint.is_some() {
            s3_config.set_endpoint_url(endpoint.clone());
            analyzer_config.set_endpoint_url(endpoint.clone());
        }
        if endpoint.is_some() || sdk.endpoint_url().is_some() {
            // An emulator on one address cannot serve virtual-hosted bucket names.
            s3_config = s3_config.force_path_style(true);
        }
        let cfn = aws_sdk_cloudformation::Client::from_conf(cfn_config.build());
        let orgs = aws_sdk_organizations::Client::from_conf(orgs_config.build());
        let mut cloud = Self::from_clients(cfn, orgs, sts_client(sdk, settings));
        cloud.calls = calls;
        cloud.s3 = Some(aws_sdk_s3::Client::from_conf(s3_config.build()));
        cloud.analyzer = Some(aws_sdk_accessanalyzer::Client::from_conf(
            analyzer_config.build(),
        ));
        cloud.region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
        cloud
    }

    /// A DynamoDB client with the daemon's own credentials, Region and endpoint (the lease table).
    pub fn dynamodb_client(&self) -> Option<aws_sdk_dynamodb::Client> {
        let (sdk, settings) = self.base.as_ref()?;
        let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
        if settings.endpoint_url.is_some() {
            config.set_endpoint_url(settings.endpoint_url.clone());
        }
        Some(aws_sdk_dynamodb::Client::from_conf(config.build()))
    }

    /// Wrap ready-made clients (tests inject aws-smithy-mocks clients here).
    pub fn from_clients(
        cfn: aws_sdk_cloudformation::Client,
        orgs: aws_sdk_organizations::Client,
        sts: aws_sdk_sts::Client,
    ) -> AwsCloud {
        AwsCloud {
            cfn,
            orgs,
            sts,
            s3: None,
            analyzer: None,
            region: String::new(),
            calls: Arc::default(),
            base: None,
            role: None,
        }
    }

    /// With an S3 client for the staging bucket, in `region` (tests inject a mock here).
    pub fn with_s3(mut self, s3: aws_sdk_s3::Client, region: &str) -> AwsCloud {
        self.s3 = Some(s3);
        self.region = region.to_string();
        self
    }

    /// With an Access Analyzer client (tests inject a mock here).
    pub fn with_access_analyzer(mut self, analyzer: aws_sdk_accessanalyzer::Client) -> AwsCloud {
        self.analyzer = Some(analyzer);
        self
    }

    /// Record one request's outcome and map its error.
    fn settle<T, E>(&self, call: Call, result: Result<T, SdkError<E, HttpResponse>>) -> Result<T>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        settle(&self.calls, call, result)
    }
}

/// Record one request's outcome in `calls` and map its error: every SDK call of this module (and the role's
/// AssumeRole) goes through here.
fn settle<T, E>(
    calls: &CallCounter,
    call: Call,
    result: Result<T, SdkError<E, HttpResponse>>,
) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(output) => {
            calls.record(call.service, call.operation, OK);
            Ok(output)
        }
        Err(err) => {
            let mapped = map_sdk_error(call, &err);
            calls.record(call.service, call.operation, mapped.metric_label());
            tracing::debug!(error = %mapped, "AWS call failed");
            Err(mapped)
        }
    }
}

/// An STS client with the settings' endpoint.
fn sts_client(sdk: &SdkConfig, settings: &AwsSettings) -> aws_sdk_sts::Client {
    let mut config = aws_sdk_sts::config::Builder::from(sdk);
    if settings.endpoint_url.is_some() {
        config.set_endpoint_url(settings.endpoint_url.clone());
    }
    aws_sdk_sts::Client::from_conf(config.build())
}

#[async_trait]
impl Connector for AwsCloud {
    async fn assume(&self, to_assume: &RoleToAssume) -> Result<Arc<dyn Cloud>> {
        let Some((sdk, settings)) = &self.base else {
            return Err(Error::Settings(
                "spec.credentials needs the SDK's own configuration; this cloud was built from bare clients"
                    .into(),
            ));
        };
        let assumed = Arc::new(role::AssumedRole::new(
            sts_client(sdk, settings),
            to_assume.clone(),
            self.calls.clone(),
        ));
        assumed.credentials().await?;
        let role_sdk = sdk
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(role::RoleProvider(
                assumed.clone(),
            )))
            .build();
        let mut cloud = Self::from_sdk(&role_sdk, settings, self.calls.clone());
        cloud.role = Some(assumed);
        Ok(Arc::new(cloud))
    }
}

/// Adaptive retry under the SDK's Retry Behavior 2.1 (what `AWS_NEW_RETRIES_2026=true` selects). Under the
/// default 2.0 rules the adaptive rate limiter charges a throttled retry 10 tokens from a bucket that, at
/// stacksetd's low request rates, holds at most 1: every throttled call then slept the full `max_backoff` (20 s)
/// before each retry (found by tests/faults_moto.rs: a 30-account deployment through 20% throttling took over
/// three minutes). 2.1 charges one token per attempt and backs off exponentially (1 s base, jittered, 20 s cap).
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(max_attempts)
        .with_retry_spec(aws_smithy_types::retry::RetrySpec::v2_1())
}

/// How long one attempt of a call may take to connect, and in all: without them an attempt waits on a silent
/// peer forever (the SDK sets neither by default). A pass is bounded by them and `aws.max_attempts`; with leases
/// the gate also abandons a mutating call at its lease's call deadline (`daemon::gate`).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub fn timeout_config() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build()
}

/// Whether the environment or profile redirects Organizations (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`, or
/// the Organizations-specific variable). Such an endpoint gets requests signed for the configured Region, like
/// every other service there.
fn organizations_endpoint_configured(sdk: &SdkConfig) -> bool {
    let env_set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let ignored = std::env::var(IGNORE_ENDPOINTS_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    sdk.endpoint_url().is_some() || (env_set(ORGANIZATIONS_ENDPOINT_ENV) && !ignored)
}

/// The Region the Organizations client signs for. Commercial Regions all use the global endpoint in us-east-1;
/// other partitions (China, GovCloud, ISO, EU sovereign) keep their own Region, which the SDK's endpoint rules map
/// to that partition's global endpoint.
fn organizations_region(configured: Option<&Region>) -> Region {
    const OTHER_PARTITIONS: &[&str] = &["cn-", "us-gov-", "us-iso", "eu-iso", "eusc-"];
    match configured {
        Some(region)
            if OTHER_PARTITIONS
                .iter()
                .any(|prefix| region.as_ref().starts_with(prefix)) =>
        {
            region.clone()
        }
        _ => Region::from_static(ORGANIZATIONS_GLOBAL_REGION),
    }
}

/// Drain a paginator, recording and mapping every page's failure like any call, and convert each item. The
/// SDK's paginators and page types differ per operation, so a macro (not a function) lets them share the loop.
macro_rules! collect_pages {
    ($cloud:expr, $call:expr, $pages:expr, $field:ident, $convert:expr) => {{
        let mut pages = $pages;
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = $cloud.settle($call, page)?;
            out.extend(page.$field.unwrap_or_default().into_iter().map($convert));
        }
        Ok(out)
    }};
}

/// The fields every stack-instance operation carries. The three SDK builders are distinct types with the same
/// setters, so a macro (not a function) lets them share one definition.
macro_rules! instance_operation {
    ($builder:expr, $request:expr) => {
        $builder
            .stack_set_name(&$request.name)
            .call_as(convert::call_as($request.call_as))
            .deployment_targets(convert::deployment_targets(&$request.targets))
            .set_regions(Some($request.regions.clone()))
            .set_operation_preferences(convert::preferences(&$request.preferences))
            .operation_id(&$request.operation_id)
    };
}

/// The stack set's settings on a CreateStackSet or UpdateStackSet builder (distinct SDK types with the same
/// setters). `keep` sends UsePreviousValue for every parameter. An empty tag list is sent as `Tags=`, which
/// clears the tag set on an update. The template goes separately (body, URL or UsePreviousTemplate).
macro_rules! stack_set_settings {
    ($builder:expr, $settings:expr, $keep:expr) => {
        $builder
            .set_description($settings.description.clone())
            .set_parameters(Some(convert::parameters(&$settings.parameters, $keep)))
            .set_capabilities(Some(convert::capabilities(&$settings.capabilities)))
            .set_tags(Some(convert::tags(&$settings.tags)))
            .set_auto_deployment(
                $settings
                    .auto_deployment
                    .as_ref()
                    .map(convert::auto_deployment),
            )
            .set_managed_execution($settings.managed_execution.map(convert::managed_execution))
    };
}

impl AwsCloud {
    /// ListStackInstances, every page, in one Region when `region` is given (StackInstanceRegion).
    async fn instances(
        &self,
        name: &str,
        call_as: CallAs,
        region: Option<&str>,
    ) -> Result<Vec<StackInstance>> {
        let call = Call::cloudformation("ListStackInstances", call_as);
        let pages = self
            .cfn
            .list_stack_instances()
            .stack_set_name(name)
            .set_stack_instance_region(region.map(str::to_string))
            .call_as(convert::call_as(call_as))
            .max_results(CLOUDFORMATION_PAGE_SIZE)
            .into_paginator()
            .send();
        collect_pages!(self, call, pages, summaries, convert::stack_instance)
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn caller_account(&self) -> Result<String> {
        let call = Call::sts("GetCallerIdentity");
        let out = self.settle(call, self.sts.get_caller_identity().send().await)?;
        out.account.ok_or_else(|| malformed(call, "Account"))
    }

    async fn describe_organization(&self) -> Result<OrganizationInfo> {
        let call = Call::organizations("DescribeOrganization");
        let out = self.settle(call, self.orgs.describe_organization().send().await)?;
        out.organization
            .map(convert::organization)
            .ok_or_else(|| malformed(call, "Organization"))
    }

    async fn list_roots(&self) -> Result<Vec<OrgNode>> {
        let call = Call::organizations("ListRoots");
        let pages = self
            .orgs
            .list_roots()
            .max_results(ORGANIZATIONS_PAGE_SIZE)
            .into_paginator()
            .send();
        collect_pages!(self, call, pages, roots, convert::root)
    }

    async fn list_organizational_units(&self, parent_id: &str) -> Result<Vec<OrgNode>> {
        let call = Call::organizations("ListOrganizationalUnitsForParent");
        let pages = self
            .orgs
            .list_organizational_units_for_parent()
            .parent_id(parent_id)
            .max_results(ORGANIZATIONS_PAGE_SIZE)
            .into_paginator()
            .send();
        collect_pages!(
            self,
            call,
            pages,
            organizational_units,
            convert::organizational_unit
        )
    }

    async fn list_accounts(&self, parent_id: &str) -> Result<Vec<Account>> {
        let call = Call::organizations("ListAccountsForParent");
        let pages = self
            .orgs
            .list_accounts_for_parent()
            .parent_id(parent_id)
            .max_results(ORGANIZATIONS_PAGE_SIZE)
            .into_paginator()
            .send();
        collect_pages!(self, call, pages, accounts, convert::account)
    }

    async fn list_delegated_administrators(&self, service_principal: &str) -> Result<Vec<String>> {
        let call = Call::organizations("ListDelegatedAdministrators");
        let pages = self
            .orgs
            .list_delegated_administrators()
            .service_principal(service_principal)
            .max_results(ORGANIZATIONS_PAGE_SIZE)
            .into_paginator()
            .send();
        let admins: Result<Vec<Option<String>>> = collect_pages!(
            self,
            call,
            pages,
            delegated_administrators,
            |admin: aws_sdk_organizations::types::DelegatedAdministrator| admin.id
        );
        Ok(admins?.into_iter().flatten().collect())
    }

    async fn list_aws_service_access(&self) -> Result<Vec<String>> {
        let call = Call::organizations("ListAWSServiceAccessForOrganization");
        let pages = self
            .orgs
            .list_aws_service_access_for_organization()
            .max_results(ORGANIZATIONS_PAGE_SIZE)
            .into_paginator()
            .send();
        let principals: Result<Vec<Option<String>>> = collect_pages!(
            self,
            call,
            pages,
            enabled_service_principals,
            |p: aws_sdk_organizations::types::EnabledServicePrincipal| p.service_principal
        );
        Ok(principals?.into_iter().flatten().collect())
    }

    async fn describe_organizations_access(&self, call_as: CallAs) -> Result<String> {
        let call = Call::cloudformation("DescribeOrganizationsAccess", call_as);
        let out = self.settle(
            call,
            self.cfn
                .describe_organizations_access()
                .call_as(convert::call_as(call_as))
                .send()
                .await,
        )?;
        out.status
            .map(|s| s.as_str().to_string())
            .ok_or_else(|| malformed(call, "Status"))
    }

    async fn activate_organizations_access(&self) -> Result<()> {
        let call = Call::cloudformation("ActivateOrganizationsAccess", CallAs::SelfAccount);
        self.settle(call, self.cfn.activate_organizations_access().send().await)?;
        Ok(())
    }

    async fn describe_stack_set(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Option<ObservedStackSet>> {
        let call = Call::cloudformation("DescribeStackSet", call_as);
        let result = self
            .cfn
            .describe_stack_set()
            .stack_set_name(name)
            .call_as(convert::call_as(call_as))
            .send()
            .await;
        let not_found = matches!(&result, Err(err) if err
            .as_service_error()
            .is_some_and(|e| e.is_stack_set_not_found_exception()));
        let out = match self.settle(call, result) {
            Ok(out) => out,
            Err(_) if not_found => return Ok(None),
            Err(err) => return Err(err),
        };
        let set = out.stack_set.ok_or_else(|| malformed(call, "StackSet"))?;
        Ok(convert::observed_stack_set(set, name))
    }

    async fn list_stack_sets(&self, call_as: CallAs) -> Result<Vec<String>> {
        use aws_sdk_cloudformation::types::{
            PermissionModels as Model, StackSetStatus as Status, StackSetSummary,
        };
        let call = Call::cloudformation("ListStackSets", call_as);
        let pages = self
            .cfn
            .list_stack_sets()
            .status(Status::Active)
            .call_as(convert::call_as(call_as))
            .max_results(CLOUDFORMATION_PAGE_SIZE)
            .into_paginator()
            .send();
        let summaries: Result<Vec<Option<String>>> =
            collect_pages!(self, call, pages, summaries, |s: StackSetSummary| {
                matches!(s.permission_model(), Some(Model::ServiceManaged) | None)
                    .then(|| s.stack_set_name().unwrap_or_default().to_string())
            });
        Ok(summaries?
            .into_iter()
            .flatten()
            .filter(|n| !n.is_empty())
            .collect())
    }

    async fn list_stack_instances(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<StackInstance>> {
        self.instances(name, call_as, None).await
    }

    async fn list_stack_instances_in(
        &self,
        name: &str,
        call_as: CallAs,
        region: &str,
    ) -> Result<Vec<StackInstance>> {
        let mut instances = self.instances(name, call_as, Some(region)).await?;
        // An endpoint that ignores the filter must not make another Region's instances count twice.
        instances.retain(|i| i.region == region);
        Ok(instances)
    }

    async fn list_operations(
        &self,
        name: &str,
        call_as: CallAs,
        limit: usize,
    ) -> Result<Vec<Operation>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let call = Call::cloudformation("ListStackSetOperations", call_as);
        let page_size = i32::try_from(limit)
            .unwrap_or(CLOUDFORMATION_PAGE_SIZE)
            .min(CLOUDFORMATION_PAGE_SIZE);
        let mut pages = self
            .cfn
            .list_stack_set_operations()
            .stack_set_name(name)
            .call_as(convert::call_as(call_as))
            .max_results(page_size)
            .into_paginator()
            .send();
        // Every page up to `limit` entries: AWS documents no order, so nothing may be inferred from position; what
        // was fetched is sorted by creation time for stable output only.
        let mut summaries = Vec::new();
        while summaries.len() < limit {
            let Some(page) = pages.next().await else {
                break;
            };
            let page = self.settle(call, page)?;
            summaries.extend(page.summaries.unwrap_or_default());
        }
        summaries.sort_by_key(|s| std::cmp::Reverse(s.creation_timestamp));
        let mut out = Vec::with_capacity(limit.min(summaries.len()));
        for summary in summaries {
            if out.len() == limit {
                break;
            }
            match convert::operation_summary(summary) {
                Ok(op) => out.push(op),
                Err(skip) => {
                    tracing::warn!(stack_set = name, "ignoring operation: {}", skip.0)
                }
            }
        }
        Ok(out)
    }

    async fn describe_operation(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Operation> {
        let call = Call::cloudformation("DescribeStackSetOperation", call_as);
        let out = self.settle(
            call,
            self.cfn
                .describe_stack_set_operation()
                .stack_set_name(name)
                .operation_id(operation_id)
                .call_as(convert::call_as(call_as))
                .send()
                .await,
        )?;
        let op = out
            .stack_set_operation
            .ok_or_else(|| malformed(call, "StackSetOperation"))?;
        convert::operation(op).map_err(|e| malformed(call, &e.0))
    }

    async fn list_operation_results(
        &self,
        name: &str,
        operation_id: &str,
        call_as: CallAs,
    ) -> Result<Vec<OperationResult>> {
        let call = Call::cloudformation("ListStackSetOperationResults", call_as);
        let pages = self
            .cfn
            .list_stack_set_operation_results()
            .stack_set_name(name)
            .operation_id(operation_id)
            .call_as(convert::call_as(call_as))
            .max_results(CLOUDFORMATION_PAGE_SIZE)
            .into_paginator()
            .send();
        collect_pages!(self, call, pages, summaries, convert::operation_result)
    }

    async fn list_auto_deployment_targets(
        &self,
        name: &str,
        call_as: CallAs,
    ) -> Result<Vec<AutoDeploymentTarget>> {
        // The SDK has no paginator for this call: follow NextToken by hand (each page recorded like any call).
        let call = Call::cloudformation("ListStackSetAutoDeploymentTargets", call_as);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.settle(
                call,
                self.cfn
                    .list_stack_set_auto_deployment_targets()
                    .stack_set_name(name)
                    .call_as(convert::call_as(call_as))
                    .max_results(CLOUDFORMATION_PAGE_SIZE)
                    .set_next_token(token.take())
                    .send()
                    .await,
            )?;
            out.extend(
                page.summaries
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| {
                        Some(AutoDeploymentTarget {
                            organizational_unit_id: s.organizational_unit_id?,
                            regions: s.regions.unwrap_or_default(),
                        })
                    }),
            );
            match page.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(out),
            }
        }
    }

    async fn create_stack_set(&self, request: &CreateStackSet) -> Result<()> {
        let call = Call::cloudformation("CreateStackSet", request.call_as);
        let settings = &request.settings;
        let builder = self
            .cfn
            .create_stack_set()
            .stack_set_name(&request.name)
            .call_as(convert::call_as(request.call_as))
            .set_template_body(
                request
                    .template_url
                    .is_none()
                    .then(|| settings.template_body.clone()),
            )
            .set_template_url(request.template_url.clone())
            .permission_model(PermissionModels::ServiceManaged)
            .client_request_token(&request.client_token);
        let builder = stack_set_settings!(builder, settings, false);
        self.settle(call, builder.send().await)?;
        Ok(())
    }

    async fn update_stack_set(&self, request: &UpdateStackSet) -> Result<String> {
        let call = Call::cloudformation("UpdateStackSet", request.call_as);
        let settings = &request.settings;
        // No DeploymentTargets and no Regions: the update applies to every instance (and AWS rejects them
        // together with AutoDeployment). With `only`, just those instances (a staged rollout's canary).
        let mut builder = self
            .cfn
            .update_stack_set()
            .stack_set_name(&request.name)
            .call_as(convert::call_as(request.call_as))
            .set_operation_preferences(convert::preferences(&request.preferences))
            .operation_id(&request.operation_id);
        if let Some(only) = &request.only {
            builder = builder
                .deployment_targets(convert::deployment_targets(&only.targets))
                .set_regions(Some(only.regions.clone()));
        }
        let mut builder = stack_set_settings!(builder, settings, request.keep_template);
        builder = match (&request.template_url, request.keep_template) {
            (_, true) => builder.use_previous_template(true),
            (Some(url), false) => builder.template_url(url),
            (None, false) => builder.template_body(&settings.template_body),
        };
        let out = self.settle(call, builder.send().await)?;
        Ok(echoed(out.operation_id, &request.operation_id))
    }

    async fn create_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        let call = Call::cloudformation("CreateStackInstances", request.call_as);
        let out = self.settle(
            call,
            instance_operation!(self.cfn.create_stack_instances(), request)
                .send()
                .await,
        )?;
        Ok(echoed(out.operation_id, &request.operation_id))
    }

    async fn update_stack_instances(&self, request: &InstancesRequest) -> Result<String> {
        let call = Call::cloudformation("UpdateStackInstances", request.call_as);
        let out = self.settle(
            call,
            instance_operation!(self.cfn.update_stack_instances(), request)
                .send()
                .await,
        )?;
        Ok(echoed(out.operation_id, &request.operation_id))
    }

    async fn delete_stack_instances(&self, request: &DeleteInstancesRequest) -> Result<String> {
        let call = Call::cloudformation("DeleteStackInstances", request.call_as);
        let out = self.settle(
            call,
            instance_operation!(self.cfn.delete_stack_instances(), request)
                .retain_stacks(request.retain_stacks)
                .send()
                .await,
        )?;
        Ok(echoed(out.operation_id, &request.operation_id))
    }

    async fn delete_stack_set(&self, name: &str, call_as: CallAs) -> Result<()> {
        let call = Call::cloudformation("DeleteStackSet", call_as);
        self.settle(
            call,
            self.cfn
                .delete_stack_set()
                .stack_set_name(name)
                .call_as(convert::call_as(call_as))
                .send()
                .await,
        )?;
        Ok(())
    }

    async fn detect_stack_set_drift(&self, request: &DetectDriftRequest) -> Result<String> {
        let call = Call::cloudformation("DetectStackSetDrift", request.call_as);
        let out = self.settle(
            call,
            self.cfn
                .detect_stack_set_drift()
                .stack_set_name(&request.name)
                .call_as(convert::call_as(request.call_as))
                .set_operation_preferences(convert::preferences(&request.preferences))
                .operation_id(&request.operation_id)
                .send()
                .await,
        )?;
        Ok(echoed(out.operation_id, &request.operation_id))
    }

    async fn assume_role(&self, role_arn: &str, session_name: &str) -> Result<()> {
        let call = Call::sts("AssumeRole");
        self.settle(
            call,
            self.sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(session_name)
                .duration_seconds(ASSUME_ROLE_SECONDS)
                .send()
                .await,
        )?;
        Ok(())
    }

    async fn describe_stack(&self, name: &str, region: &str) -> Result<Option<ObservedStack>> {
        self.stack(name, region).await
    }
    async fn get_stack_template(&self, stack_id: &str, region: &str) -> Result<String> {
        self.stack_template(stack_id, region).await
    }
    async fn create_stack(&self, request: &StackRequest) -> Result<()> {
        self.put_stack(request, true).await.map(drop)
    }
    async fn update_stack(&self, request: &StackRequest) -> Result<bool> {
        self.put_stack(request, false).await
    }
    async fn delete_stack(&self, request: &DeleteStackRequest) -> Result<()> {
        self.remove_stack(request).await
    }
    async fn detect_stack_drift(&self, stack_id: &str, region: &str) -> Result<()> {
        self.stack_drift(stack_id, region).await
    }

    async fn stage_template(&self, bucket: &str, key: &str, body: &str) -> Result<String> {
        let call = Call::service(errors::S3, "PutObject");
        let Some(s3) = &self.s3 else {
            return Err(Error::Settings(
                "no S3 client: stacksetd was built without one".into(),
            ));
        };
        let content_type = if body.trim_start().starts_with('{') {
            "application/json"
        } else {
            "application/x-yaml"
        };
        let out = self.settle(
            call,
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(aws_sdk_s3::primitives::ByteStream::from(
                    body.as_bytes().to_vec(),
                ))
                .send()
                .await,
        )?;
        // Only a versioned object pins the bytes: at a plain key anyone who may write to the bucket could replace
        // them between this upload and CloudFormation's read. An unversioned bucket is refused (the object put is
        // content-addressed and harmless), naming the fix.
        let Some(version) = out.version_id() else {
            return Err(Error::Preflight {
                reason: "staging_bucket_unversioned",
                message: format!(
                    "staging bucket {bucket} is not versioned: the template at s3://{bucket}/{key} could be \
                     replaced before CloudFormation reads it, so it is not used; enable versioning (aws s3api \
                     put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled)"
                ),
            });
        };
        Ok(crate::staged_url(bucket, &self.region, key, Some(version)))
    }

    async fn check_no_new_access(
        &self,
        existing: &str,
        new: &str,
        kind: PolicyKind,
    ) -> Result<AccessVerdict> {
        use aws_sdk_accessanalyzer::types::{AccessCheckPolicyType, CheckNoNewAccessResult};
        let call = Call::service(errors::ACCESS_ANALYZER, "CheckNoNewAccess");
        let Some(analyzer) = &self.analyzer else {
            return Err(Error::Settings(
                "no Access Analyzer client: stacksetd was built without one".into(),
            ));
        };
        let policy_type = match kind {
            PolicyKind::Identity => AccessCheckPolicyType::IdentityPolicy,
            PolicyKind::Trust => AccessCheckPolicyType::ResourcePolicy,
        };
        let out = self.settle(
            call,
            analyzer
                .check_no_new_access()
                .existing_policy_document(existing)
                .new_policy_document(new)
                .policy_type(policy_type)
                .send()
                .await,
        )?;
        let pass = matches!(out.result(), Some(CheckNoNewAccessResult::Pass));
        let mut reasons: Vec<String> = out
            .reasons()
            .iter()
            .map(|r| r.description().unwrap_or("new access").to_string())
            .collect();
        if reasons.is_empty() && !pass {
            reasons.push(out.message().unwrap_or("new access").to_string());
        }
        Ok(AccessVerdict { pass, reasons })
    }

    fn calls(&self) -> &CallCounter {
        &self.calls
    }

    async fn refresh_credentials(&self) -> Result<()> {
        match &self.role {
            Some(role) => role.credentials().await.map(|_| ()),
            None => Ok(()),
        }
    }
}

/// The shortest session STS grants: the access check only proves the role can be assumed.
const ASSUME_ROLE_SECONDS: i32 = 900;

/// The OperationId AWS answered with, or the one sent when the endpoint echoes none (ours is the operation's id).
fn echoed(answered: Option<String>, sent: &str) -> String {
    answered.unwrap_or_else(|| sent.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_signs_for_the_global_region_of_its_partition() {
        let region = |r: &'static str| Region::from_static(r);
        assert_eq!(
            organizations_region(Some(&region("eu-west-1"))).as_ref(),
            "us-east-1"
        );
        assert_eq!(organizations_region(None).as_ref(), "us-east-1");
        assert_eq!(
            organizations_region(Some(&region("cn-north-1"))).as_ref(),
            "cn-north-1"
        );
        assert_eq!(
            organizations_region(Some(&region("us-gov-east-1"))).as_ref(),
            "us-gov-east-1"
        );
    }

    #[test]
    fn default_settings_retry_five_times() {
        assert_eq!(AwsSettings::default().max_attempts, 5);
    }
}
