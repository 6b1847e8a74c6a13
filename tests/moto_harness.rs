//! Self-tests of the moto harness (tests/common) and of the launcher's patches (tests/moto/patches.py), driven
//! directly through the AWS SDK - no stacksetd involved. If these fail, the end-to-end tests cannot be trusted.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::*;
use aws_sdk_cloudformation as cfn;
use aws_sdk_cloudformation::types::{
    AccountFilterType, AutoDeployment, Capability, ConcurrencyMode, DeploymentTargets, Parameter,
    PermissionModels, StackSetOperationPreferences,
};

const STACK_SET: &str = "AimablyDataOnly";
/// CloudFormation's TemplateBody limit.
const TEMPLATE_BODY_MAX_BYTES: usize = 51_200;

async fn create_stack_set(client: &cfn::Client, name: &str, template: &str) {
    client
        .create_stack_set()
        .stack_set_name(name)
        .description("Aimably access to usage data in every member account")
        .template_body(template_body(template))
        .parameters(
            Parameter::builder()
                .parameter_key("ManagementAccountId")
                .parameter_value(MANAGEMENT_ACCOUNT_ID)
                .build(),
        )
        .capabilities(Capability::CapabilityNamedIam)
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .call_as(cfn::types::CallAs::SelfValue)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStackSet {name}: {e:?}"));
}

fn ou_targets(ous: &[&str]) -> DeploymentTargets {
    DeploymentTargets::builder()
        .set_organizational_unit_ids(Some(ous.iter().map(|s| s.to_string()).collect()))
        .build()
}

async fn create_instances(client: &cfn::Client, targets: DeploymentTargets) -> String {
    client
        .create_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(targets)
        .regions(REGION)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStackInstances: {e:?}"))
        .operation_id()
        .expect("operation id")
        .to_string()
}

/// A service-managed stack set whose template creates nothing named (moto keeps one IAM namespace for every
/// Region, so a named role could not be created in a second one).
async fn create_plain_stack_set(client: &cfn::Client, name: &str) {
    client
        .create_stack_set()
        .stack_set_name(name)
        .template_body(
            r#"{"Resources":{"Nothing":{"Type":"AWS::CloudFormation::WaitConditionHandle"}}}"#,
        )
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(
            AutoDeployment::builder()
                .enabled(true)
                .retain_stacks_on_account_removal(false)
                .build(),
        )
        .send()
        .await
        .expect("CreateStackSet");
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

/// ListAccountsForParent, every page of `page_size`.
async fn accounts_for_parent(
    client: &aws_sdk_organizations::Client,
    parent: &str,
    page_size: i32,
) -> BTreeSet<String> {
    let pages: Vec<_> = client
        .list_accounts_for_parent()
        .parent_id(parent)
        .max_results(page_size)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap_or_else(|e| panic!("ListAccountsForParent {parent}: {e:?}"));
    assert!(
        pages
            .iter()
            .all(|p| p.accounts().len() <= page_size as usize),
        "ListAccountsForParent honours MaxResults {page_size}"
    );
    pages
        .iter()
        .flat_map(|p| p.accounts())
        .filter_map(|a| a.id().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn organization_is_built_and_listed_as_specified() {
    let server = MotoServer::start();
    let spec = OrgSpec::standard();
    let org = build_org(&server, &spec).await;
    let client = org_client(&server).await;

    assert_eq!(org.management_account_id, MANAGEMENT_ACCOUNT_ID);
    let described = client
        .describe_organization()
        .send()
        .await
        .expect("DescribeOrganization");
    let organization = described.organization().expect("organization");
    assert_eq!(
        organization.master_account_id(),
        Some(MANAGEMENT_ACCOUNT_ID)
    );
    assert_eq!(
        organization.feature_set(),
        Some(&aws_sdk_organizations::types::OrganizationFeatureSet::All)
    );

    // 30 members, split 12 / 8 / 10, every id distinct, none the management account.
    assert_eq!(spec.member_count(), 30);
    let members = org.member_accounts();
    assert_eq!(members.len(), 30);
    assert!(!members.contains(MANAGEMENT_ACCOUNT_ID));
    assert_eq!(org.accounts_under("Platform").len(), 8);
    assert_eq!(org.accounts_under("Finance").len(), 10);
    assert_eq!(
        org.accounts_under("Engineering").len(),
        20,
        "Engineering includes its nested Platform OU"
    );

    // The organization as Organizations lists it, paging 20 at a time as AWS does.
    // Organizations' paginators have no item iterator: flatten the pages.
    let pages: Vec<_> = client
        .list_organizational_units_for_parent()
        .parent_id(&org.root_id)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("ListOrganizationalUnitsForParent root");
    let top: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| p.organizational_units())
        .filter_map(|o| o.name().map(str::to_string))
        .collect();
    assert_eq!(top, set(["Engineering", "Finance"]));
    let nested = client
        .list_organizational_units_for_parent()
        .parent_id(org.ou("Engineering"))
        .send()
        .await
        .expect("ListOrganizationalUnitsForParent Engineering");
    let nested_ids: Vec<_> = nested
        .organizational_units()
        .iter()
        .filter_map(|o| o.id())
        .collect();
    assert_eq!(nested_ids, vec![org.ou("Platform")]);

    for ou in ["Engineering", "Platform", "Finance"] {
        let ids = accounts_for_parent(&client, org.ou(ou), 5).await;
        assert_eq!(
            Some(&ids),
            org.accounts_by_ou.get(ou),
            "accounts directly in {ou}"
        );
    }
    let at_root = accounts_for_parent(&client, &org.root_id, 20).await;
    assert_eq!(
        at_root,
        set([MANAGEMENT_ACCOUNT_ID]),
        "only the management account stays at the root"
    );
}

#[tokio::test]
async fn trusted_access_follows_the_organizations_switch() {
    let server = MotoServer::start();
    let spec = OrgSpec {
        trusted_access: false,
        ..OrgSpec::standard()
    };
    build_org(&server, &spec).await;
    let client = cfn_client(&server).await;

    let status =
        |out: cfn::operation::describe_organizations_access::DescribeOrganizationsAccessOutput| {
            out.status().map(|s| s.as_str().to_string())
        };
    let before = client
        .describe_organizations_access()
        .send()
        .await
        .expect("DescribeOrganizationsAccess");
    assert_eq!(status(before).as_deref(), Some("DISABLED"));

    client
        .activate_organizations_access()
        .send()
        .await
        .expect("ActivateOrganizationsAccess");
    let after = client
        .describe_organizations_access()
        .send()
        .await
        .expect("DescribeOrganizationsAccess");
    assert_eq!(status(after).as_deref(), Some("ENABLED"));

    let principals = org_client(&server)
        .await
        .list_aws_service_access_for_organization()
        .send()
        .await
        .expect("ListAWSServiceAccessForOrganization");
    assert!(
        principals
            .enabled_service_principals()
            .iter()
            .any(|p| p.service_principal() == Some(STACKSETS_SERVICE_PRINCIPAL))
    );
}

#[tokio::test]
async fn templates_are_within_limits_and_grant_the_management_account() {
    for name in ["aimably-data-only", "aimably-data-and-scheduling"] {
        let body = template_body(name);
        assert!(
            body.len() < TEMPLATE_BODY_MAX_BYTES,
            "{name} is {} bytes",
            body.len()
        );
        let template: serde_json::Value = serde_json::from_str(&body).expect("template is JSON");
        assert_eq!(
            template["Parameters"]["ManagementAccountId"]["Type"],
            "String"
        );
        let role = &template["Resources"]["AimablyMemberRole"];
        assert_eq!(role["Type"], "AWS::IAM::Role");
        assert_eq!(role["Properties"]["RoleName"], "AimablyMemberRole");
        let principal =
            &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"];
        assert_eq!(
            principal["Fn::Sub"],
            "arn:aws:iam::${ManagementAccountId}:root"
        );
        let actions: BTreeSet<String> = role["Properties"]["Policies"]
            .as_array()
            .expect("inline policies")
            .iter()
            .flat_map(|p| {
                p["PolicyDocument"]["Statement"]
                    .as_array()
                    .expect("statements")
                    .clone()
            })
            .flat_map(|s| s["Action"].as_array().expect("actions").clone())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        assert!(
            actions.contains("ce:Get*") && actions.contains("organizations:List*"),
            "{name}: {actions:?}"
        );
        let scheduling =
            actions.contains("ec2:StopInstances") && actions.contains("rds:StartDBInstance");
        assert_eq!(
            scheduling,
            name == "aimably-data-and-scheduling",
            "{name} scheduling actions"
        );
    }
}

#[tokio::test]
async fn root_target_deploys_to_every_member_and_never_the_management_account() {
    for template in ["aimably-data-only", "aimably-data-and-scheduling"] {
        let server = MotoServer::start();
        let org = build_org(&server, &OrgSpec::standard()).await;
        let client = cfn_client(&server).await;
        create_stack_set(&client, STACK_SET, template).await;

        create_instances(&client, ou_targets(&[&org.root_id])).await;

        let deployed = instances(&client, STACK_SET).await;
        let accounts: BTreeSet<String> = deployed.iter().map(|(a, _)| a.clone()).collect();
        assert_eq!(
            accounts,
            org.member_accounts(),
            "{template}: exactly the member accounts"
        );
        assert!(
            !accounts.contains(MANAGEMENT_ACCOUNT_ID),
            "{template}: never the management account"
        );
        assert!(
            org.accounts_under("Platform").is_subset(&accounts),
            "nested OU included"
        );
        assert_eq!(
            deployed.len(),
            30,
            "one instance per account in the one Region"
        );
        assert!(deployed.iter().all(|(_, region)| region == REGION));
    }
}

#[tokio::test]
async fn create_stack_instances_twice_is_idempotent() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;

    let first = create_instances(&client, ou_targets(&[org.ou("Finance")])).await;
    let after_first = instances(&client, STACK_SET).await;
    let second = create_instances(&client, ou_targets(&[org.ou("Finance")])).await;
    let after_second = instances(&client, STACK_SET).await;

    assert_ne!(first, second, "two submissions are two operations");
    assert_eq!(
        after_first, after_second,
        "the second create changes nothing"
    );
    let accounts: BTreeSet<String> = after_second.into_iter().map(|(a, _)| a).collect();
    assert_eq!(accounts, org.accounts_under("Finance"));
}

#[tokio::test]
async fn delete_by_deployment_targets_deletes_exactly_that_ous_instances() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;
    create_instances(
        &client,
        ou_targets(&[org.ou("Engineering"), org.ou("Finance")]),
    )
    .await;
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.member_accounts()
    );

    // Only DeploymentTargets, no Accounts: AWS's service-managed form. Engineering includes nested Platform.
    client
        .delete_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(ou_targets(&[org.ou("Engineering")]))
        .regions(REGION)
        .retain_stacks(false)
        .send()
        .await
        .expect("DeleteStackInstances by OU");
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        org.accounts_under("Finance")
    );

    // An account filter narrows the delete: DIFFERENCE keeps the listed accounts.
    let finance: Vec<String> = org.accounts_under("Finance").into_iter().collect();
    let keep = &finance[..3];
    client
        .delete_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(org.ou("Finance"))
                .set_accounts(Some(keep.to_vec()))
                .account_filter_type(AccountFilterType::Difference)
                .build(),
        )
        .regions(REGION)
        .retain_stacks(false)
        .send()
        .await
        .expect("DeleteStackInstances with DIFFERENCE");
    assert_eq!(
        instance_accounts(&client, STACK_SET).await,
        keep.iter().cloned().collect()
    );
}

#[tokio::test]
async fn describe_stack_set_echoes_targets_regions_and_settings() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;

    let fresh = describe_stack_set(&client, STACK_SET)
        .await
        .expect("stack set exists");
    let auto = fresh.auto_deployment().expect("AutoDeployment echoed");
    assert_eq!(
        (auto.enabled(), auto.retain_stacks_on_account_removal()),
        (Some(true), Some(false))
    );
    assert_eq!(fresh.capabilities(), &[Capability::CapabilityNamedIam]);
    assert_eq!(
        fresh.managed_execution().and_then(|m| m.active()),
        Some(false)
    );
    assert!(fresh.organizational_unit_ids().is_empty() && fresh.regions().is_empty());

    create_instances(
        &client,
        ou_targets(&[org.ou("Engineering"), org.ou("Finance")]),
    )
    .await;
    let deployed = describe_stack_set(&client, STACK_SET)
        .await
        .expect("stack set exists");
    let ous: BTreeSet<&str> = deployed
        .organizational_unit_ids()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        ous,
        BTreeSet::from([org.ou("Engineering"), org.ou("Finance")])
    );
    assert_eq!(deployed.regions(), &[REGION.to_string()]);

    // Removing a whole OU removes it from the echo; an UpdateStackSet's AutoDeployment replaces the old one.
    client
        .delete_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(ou_targets(&[org.ou("Finance")]))
        .regions(REGION)
        .retain_stacks(false)
        .send()
        .await
        .expect("DeleteStackInstances");
    client
        .update_stack_set()
        .stack_set_name(STACK_SET)
        .use_previous_template(true)
        .capabilities(Capability::CapabilityNamedIam)
        .auto_deployment(AutoDeployment::builder().enabled(false).build())
        .send()
        .await
        .expect("UpdateStackSet");
    let updated = describe_stack_set(&client, STACK_SET)
        .await
        .expect("stack set exists");
    assert_eq!(
        updated.organizational_unit_ids(),
        &[org.ou("Engineering").to_string()]
    );
    assert_eq!(
        updated.auto_deployment().and_then(|a| a.enabled()),
        Some(false)
    );
}

#[tokio::test]
async fn operations_keep_the_callers_id_and_preferences() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;

    let preferences = StackSetOperationPreferences::builder()
        .failure_tolerance_percentage(100)
        .max_concurrent_percentage(100)
        .concurrency_mode(ConcurrencyMode::SoftFailureTolerance)
        .build();
    let submit = |id: &'static str| {
        client
            .create_stack_instances()
            .stack_set_name(STACK_SET)
            .deployment_targets(ou_targets(&[org.root_id.as_str()]))
            .regions(REGION)
            .operation_id(id)
            .operation_preferences(preferences.clone())
            .send()
    };
    let out = submit("stacksetd-create-1")
        .await
        .expect("CreateStackInstances");
    assert_eq!(out.operation_id(), Some("stacksetd-create-1"));

    let again = submit("stacksetd-create-1")
        .await
        .expect_err("a reused OperationId is refused");
    assert_eq!(error_code(&again), "OperationIdAlreadyExistsException");

    let latest = latest_operation(&client, STACK_SET)
        .await
        .expect("an operation");
    assert_eq!(latest.operation_id(), Some("stacksetd-create-1"));
    let echoed = latest.operation_preferences().expect("preferences echoed");
    assert_eq!(echoed.failure_tolerance_percentage(), Some(100));
    assert_eq!(echoed.max_concurrent_percentage(), Some(100));
    assert_eq!(
        echoed.concurrency_mode(),
        Some(&ConcurrencyMode::SoftFailureTolerance)
    );

    let missing = client
        .describe_stack_set_operation()
        .stack_set_name(STACK_SET)
        .operation_id("never-submitted")
        .send()
        .await
        .expect_err("unknown operation");
    assert_eq!(error_code(&missing), "OperationNotFoundException");
}

#[tokio::test]
async fn stack_set_names_are_unique_except_for_a_retried_token() {
    let server = MotoServer::start();
    build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    let create = |token: &'static str| {
        client
            .create_stack_set()
            .stack_set_name(STACK_SET)
            .template_body(template_body("aimably-data-only"))
            .permission_model(PermissionModels::ServiceManaged)
            .auto_deployment(AutoDeployment::builder().enabled(true).build())
            .client_request_token(token)
            .send()
    };
    let first = create("token-1").await.expect("CreateStackSet");
    let retried = create("token-1")
        .await
        .expect("a retry with the same token succeeds");
    assert_eq!(first.stack_set_id(), retried.stack_set_id());
    let other = create("token-2").await.expect_err("the name is taken");
    assert_eq!(error_code(&other), "NameAlreadyExistsException");
    assert_eq!(stack_sets_named(&client, STACK_SET).await.len(), 1);
}

#[tokio::test]
async fn server_is_on_loopback_and_stops_when_dropped() {
    let server = MotoServer::start();
    let endpoint = server.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let address = ("127.0.0.1", server.port());
    std::net::TcpStream::connect(address).expect("the server accepts connections");

    drop(server);
    // Drop waits for the process to exit, so the port is closed by now; allow a moment for the kernel.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "moto still listening after drop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn list_stack_instances_pages_like_aws() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;
    create_instances(&client, ou_targets(&[&org.root_id])).await;

    let mut pages = 0;
    let mut seen = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_stack_instances()
            .stack_set_name(STACK_SET)
            .max_results(7)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("ListStackInstances");
        pages += 1;
        assert!(
            page.summaries().len() <= 7,
            "a page holds at most MaxResults"
        );
        for summary in page.summaries() {
            assert!(
                seen.insert(summary.account().unwrap_or_default().to_string()),
                "no account twice"
            );
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 5, "30 instances in pages of 7");
    assert_eq!(seen, org.member_accounts());
}

#[tokio::test]
async fn list_stack_instances_filters_by_region_like_aws() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    // A template without a named (global) role: moto creates each Region's stacks in one IAM namespace.
    create_plain_stack_set(&client, STACK_SET).await;
    client
        .create_stack_instances()
        .stack_set_name(STACK_SET)
        .deployment_targets(ou_targets(&[&org.root_id]))
        .regions(REGION)
        .regions("eu-west-1")
        .send()
        .await
        .expect("CreateStackInstances in two Regions");

    let listed = |region: Option<&'static str>| {
        let client = client.clone();
        async move {
            let pages: Vec<_> = client
                .list_stack_instances()
                .stack_set_name(STACK_SET)
                .set_stack_instance_region(region.map(str::to_string))
                .into_paginator()
                .send()
                .collect::<Vec<_>>()
                .await;
            pages
                .into_iter()
                .flat_map(|p| p.expect("ListStackInstances").summaries.unwrap_or_default())
                .map(|s| (s.region.unwrap_or_default(), s.account.unwrap_or_default()))
                .collect::<Vec<_>>()
        }
    };
    let everything = listed(None).await;
    assert_eq!(everything.len(), 2 * org.member_accounts().len());
    for region in [REGION, "eu-west-1"] {
        let one = listed(Some(region)).await;
        assert_eq!(one.len(), org.member_accounts().len(), "{region}");
        assert!(one.iter().all(|(r, _)| r == region), "{region}: {one:?}");
    }
    assert!(listed(Some("ap-south-1")).await.is_empty());
}

#[tokio::test]
async fn auto_deployment_targets_and_depends_on_like_aws() {
    let server = MotoServer::start();
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    create_stack_set(&client, STACK_SET, "aimably-data-only").await;
    create_instances(&client, ou_targets(&[&org.root_id])).await;
    let targets = client
        .list_stack_set_auto_deployment_targets()
        .stack_set_name(STACK_SET)
        .send()
        .await
        .expect("ListStackSetAutoDeploymentTargets");
    let summaries = targets.summaries();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(
        summaries[0].organizational_unit_id(),
        Some(org.root_id.as_str())
    );
    assert_eq!(summaries[0].regions(), [REGION]);

    // DependsOn is kept and echoed; an update that leaves it out keeps it.
    let other = "AimablyBaseline";
    create_plain_stack_set(&client, other).await;
    let arn = client
        .describe_stack_set()
        .stack_set_name(other)
        .send()
        .await
        .expect("DescribeStackSet")
        .stack_set
        .and_then(|s| s.stack_set_arn)
        .expect("an ARN");
    let update = |depends_on: Option<Vec<String>>| {
        client
            .update_stack_set()
            .stack_set_name(STACK_SET)
            .use_previous_template(true)
            .parameters(
                Parameter::builder()
                    .parameter_key("ManagementAccountId")
                    .use_previous_value(true)
                    .build(),
            )
            .capabilities(Capability::CapabilityNamedIam)
            .auto_deployment(
                AutoDeployment::builder()
                    .enabled(true)
                    .set_depends_on(depends_on)
                    .build(),
            )
            .send()
    };
    update(Some(vec![arn.clone()]))
        .await
        .expect("UpdateStackSet with DependsOn");
    update(None)
        .await
        .expect("UpdateStackSet without DependsOn");
    let described = client
        .describe_stack_set()
        .stack_set_name(STACK_SET)
        .send()
        .await
        .expect("DescribeStackSet")
        .stack_set
        .expect("the stack set");
    assert_eq!(
        described.auto_deployment().map(|a| a.depends_on().to_vec()),
        Some(vec![arn]),
        "{described:?}"
    );
}

/// `MotoServer::seed_ids` makes moto's ids repeatable, so `FAULT_SEED` replays the fault proxy's draws (they
/// depend on request bodies, which carry account and OU ids): two servers seeded alike build the same
/// organization ids; a third seeded otherwise does not.
#[tokio::test]
async fn a_seeded_moto_builds_the_same_ids_every_time() {
    let mut built = Vec::new();
    for seed in [7, 7, 8] {
        let server = MotoServer::start();
        server.seed_ids(seed);
        let org = build_org(&server, &OrgSpec::standard()).await;
        built.push((
            org.root_id.clone(),
            org.ou_ids.clone(),
            org.accounts_by_ou.clone(),
        ));
    }
    assert_eq!(built[0], built[1], "the same seed, the same ids");
    assert_ne!(built[0], built[2], "another seed, other ids");
}

/// The Description of the stack each stack instance of `stack_set` runs in `REGION`, by account, read from moto's
/// own model dump (`GET /moto-api/data.json`): moto keeps a service-managed instance's stack out of
/// CloudFormation's API, where AWS would show it in the member account.
pub(crate) async fn stack_descriptions(
    server: &MotoServer,
    stack_set: &str,
) -> std::collections::BTreeMap<String, String> {
    let addr = format!("127.0.0.1:{}", server.port());
    let response = crate::daemon_support::get(&addr, "/moto-api/data.json").await;
    assert_eq!(response.status, 200, "{}", response.headers);
    let data = response.json();
    let mut found = std::collections::BTreeMap::new();
    for stack in data["cloudformation"]["Stack"]
        .as_array()
        .expect("moto's Stack models")
    {
        if stack["name"] != stack_set || stack["region_name"] != REGION {
            continue;
        }
        let account = stack["account_id"]
            .as_str()
            .expect("account_id")
            .to_string();
        let description = stack["template_description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            found.insert(account.clone(), description).is_none(),
            "two stacks of {stack_set} in {account}"
        );
    }
    found
}

/// patch_update_stack_set_scoped_like_aws and patch_operations_end_when_they_finish: a template change marks every
/// instance OUTDATED and updates only the DeploymentTargets x Regions given (or every instance without them); a
/// `fail-instance-update` fault fails one account's instance, which keeps its stack; a finished operation ended in
/// the past; instances created later get the current template.
#[tokio::test]
async fn update_stack_set_updates_only_its_targets_like_aws() {
    let dir = tempfile::tempdir().unwrap();
    let (server, faults) = MotoServer::start_with_fault_file(dir.path());
    let org = build_org(&server, &OrgSpec::standard()).await;
    let client = cfn_client(&server).await;
    let template = |version: &str| {
        serde_json::json!({
            "Description": version,
            "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        })
        .to_string()
    };
    client
        .create_stack_set()
        .stack_set_name(STACK_SET)
        .template_body(template("v1"))
        .permission_model(PermissionModels::ServiceManaged)
        .auto_deployment(AutoDeployment::builder().enabled(true).build())
        .send()
        .await
        .expect("CreateStackSet");
    create_instances(&client, ou_targets(&[org.ou("Finance")])).await;
    let finance = org.accounts_under("Finance");
    let canary = finance.iter().next().unwrap().clone();
    let expect = |statuses: &[(String, String, String)],
                  want: &dyn Fn(&str) -> (&'static str, &'static str)| {
        assert_eq!(statuses.len(), finance.len(), "{statuses:?}");
        for (account, status, detailed) in statuses {
            assert_eq!(
                (status.as_str(), detailed.as_str()),
                want(account),
                "{account}: {statuses:?}"
            );
        }
    };

    // Scoped: OUs, Accounts and INTERSECTION name the canary alone.
    let started = std::time::SystemTime::now();
    client
        .update_stack_set()
        .stack_set_name(STACK_SET)
        .template_body(template("v2"))
        .deployment_targets(
            DeploymentTargets::builder()
                .organizational_unit_ids(org.ou("Finance"))
                .accounts(&canary)
                .account_filter_type(AccountFilterType::Intersection)
                .build(),
        )
        .regions(REGION)
        .operation_id("canary-1")
        .send()
        .await
        .expect("UpdateStackSet with DeploymentTargets");
    let op = client
        .describe_stack_set_operation()
        .stack_set_name(STACK_SET)
        .operation_id("canary-1")
        .send()
        .await
        .expect("DescribeStackSetOperation")
        .stack_set_operation
        .expect("an operation");
    let targets = op.deployment_targets().expect("DeploymentTargets echoed");
    assert_eq!(targets.accounts(), std::slice::from_ref(&canary));
    assert_eq!(
        targets.account_filter_type(),
        Some(&AccountFilterType::Intersection)
    );
    let (created, ended) = (
        op.creation_timestamp().expect("CreationTimestamp"),
        op.end_timestamp().expect("EndTimestamp"),
    );
    let ended_at = std::time::SystemTime::try_from(*ended).unwrap();
    assert!(ended >= created, "{op:?}");
    assert!(
        ended_at <= std::time::SystemTime::now() && ended_at + Duration::from_secs(5) >= started,
        "a finished operation ended between the call and now: {op:?}"
    );
    let in_list = operations(&client, STACK_SET).await;
    let listed = in_list
        .iter()
        .find(|o| o.operation_id() == Some("canary-1"))
        .expect("listed");
    assert_eq!(
        listed.end_timestamp(),
        Some(ended),
        "ListStackSetOperations agrees"
    );
    expect(&instance_statuses(&client, STACK_SET).await, &|a| {
        if a == canary {
            ("CURRENT", "SUCCEEDED")
        } else {
            ("OUTDATED", "SUCCEEDED")
        }
    });
    let stacks = stack_descriptions(&server, STACK_SET).await;
    assert_eq!(stacks.len(), finance.len(), "{stacks:?}");
    for (account, description) in &stacks {
        let want = if *account == canary { "v2" } else { "v1" };
        assert_eq!(description, want, "{account}'s stack");
    }

    // Unscoped (the template kept): every instance is updated.
    client
        .update_stack_set()
        .stack_set_name(STACK_SET)
        .use_previous_template(true)
        .send()
        .await
        .expect("UpdateStackSet for every instance");
    expect(&instance_statuses(&client, STACK_SET).await, &|_| {
        ("CURRENT", "SUCCEEDED")
    });
    assert!(
        stack_descriptions(&server, STACK_SET)
            .await
            .values()
            .all(|d| d == "v2")
    );

    // A failing account: its instance stays OUTDATED (FAILED) on its stack; beyond the tolerance (0), the
    // operation fails and counts it.
    let failing = finance.iter().nth(1).unwrap().clone();
    std::fs::write(
        &faults,
        format!("# one account\nfail-instance-update {failing}\n"),
    )
    .unwrap();
    client
        .update_stack_set()
        .stack_set_name(STACK_SET)
        .template_body(template("v3"))
        .operation_id("all-1")
        .send()
        .await
        .expect("UpdateStackSet");
    let op = client
        .describe_stack_set_operation()
        .stack_set_name(STACK_SET)
        .operation_id("all-1")
        .send()
        .await
        .expect("DescribeStackSetOperation")
        .stack_set_operation
        .expect("an operation");
    assert_eq!(
        op.status(),
        Some(&cfn::types::StackSetOperationStatus::Failed),
        "{op:?}"
    );
    assert_eq!(
        op.status_details()
            .and_then(|d| d.failed_stack_instances_count()),
        Some(1)
    );
    expect(&instance_statuses(&client, STACK_SET).await, &|a| {
        if a == failing {
            ("OUTDATED", "FAILED")
        } else {
            ("CURRENT", "SUCCEEDED")
        }
    });
    let results = client
        .list_stack_set_operation_results()
        .stack_set_name(STACK_SET)
        .operation_id("all-1")
        .send()
        .await
        .expect("ListStackSetOperationResults");
    let failed: Vec<_> = results
        .summaries()
        .iter()
        .filter(|r| r.status() == Some(&cfn::types::StackSetOperationResultStatus::Failed))
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert_eq!(failed[0].account(), Some(failing.as_str()));
    assert!(
        failed[0]
            .status_reason()
            .is_some_and(|r| r.contains("fail-instance-update"))
    );
    for (account, description) in stack_descriptions(&server, STACK_SET).await {
        let want = if account == failing { "v2" } else { "v3" };
        assert_eq!(description, want, "{account}'s stack");
    }

    // Without the fault the account is healthy again; an instance created now gets the current template.
    std::fs::write(&faults, "").unwrap();
    create_instances(&client, ou_targets(&[org.ou("Platform")])).await;
    let stacks = stack_descriptions(&server, STACK_SET).await;
    for account in org.accounts_under("Platform") {
        assert_eq!(
            stacks.get(&account).map(String::as_str),
            Some("v3"),
            "{account}"
        );
    }
}

/// patch_operations_run_when_held: a `hold-operation <id> <seconds>` fault (STACKSETD_MOTO_FAULTS) keeps that
/// operation RUNNING, without an EndTimestamp, in DescribeStackSetOperation and ListStackSetOperations until that
/// long after its creation, then shows it ended at that time; another operation, and the same one once the line is
/// gone, read as moto finished them.
#[tokio::test]
async fn a_held_operation_runs_until_its_time() {
    const HOLD: f64 = 3.0;
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("faults");
    std::fs::write(
        &faults,
        format!("# one operation\nhold-operation held-1 {HOLD}\n"),
    )
    .unwrap();
    let server = MotoServer::start_with_env(&[("STACKSETD_MOTO_FAULTS", faults.to_str().unwrap())]);
    let spec = OrgSpec {
        root_accounts: 0,
        ous: vec![OuSpec::new("Finance", None, 2)],
        trusted_access: true,
    };
    let org = build_org(&server, &spec).await;
    let client = cfn_client(&server).await;
    create_plain_stack_set(&client, STACK_SET).await;
    for id in ["held-1", "free-1"] {
        client
            .create_stack_instances()
            .stack_set_name(STACK_SET)
            .deployment_targets(ou_targets(&[org.ou("Finance")]))
            .regions(REGION)
            .operation_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateStackInstances {id}: {e:?}"));
    }
    type Seen = (
        cfn::types::StackSetOperationStatus,
        Option<cfn::primitives::DateTime>,
        cfn::primitives::DateTime,
    );
    let described = |id: &'static str| {
        let client = client.clone();
        async move {
            let op = client
                .describe_stack_set_operation()
                .stack_set_name(STACK_SET)
                .operation_id(id)
                .send()
                .await
                .expect("DescribeStackSetOperation")
                .stack_set_operation
                .expect("an operation");
            (
                op.status.expect("a status"),
                op.end_timestamp,
                op.creation_timestamp.expect("a CreationTimestamp"),
            )
        }
    };
    let listed = |id: &'static str| {
        let client = client.clone();
        async move {
            let op = operations(&client, STACK_SET)
                .await
                .into_iter()
                .find(|o| o.operation_id() == Some(id))
                .expect("listed");
            (
                op.status.expect("a status"),
                op.end_timestamp,
                op.creation_timestamp.expect("a CreationTimestamp"),
            )
        }
    };
    let running = cfn::types::StackSetOperationStatus::Running;
    let succeeded = cfn::types::StackSetOperationStatus::Succeeded;
    let held: [Seen; 2] = [described("held-1").await, listed("held-1").await];
    for (status, end, _) in &held {
        assert_eq!((status, end), (&running, &None), "held: {held:?}");
    }
    for (status, end, _) in [described("free-1").await, listed("free-1").await] {
        assert_eq!(status, succeeded);
        assert!(end.is_some(), "a finished operation has an end");
    }

    // Past its time it has ended, at its creation plus the hold.
    let created = held[0].2.as_secs_f64();
    let wait = created + HOLD
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0) + 0.5)).await;
    for (status, end, created) in [described("held-1").await, listed("held-1").await] {
        assert_eq!(status, succeeded);
        let ran = end.expect("an EndTimestamp").as_secs_f64() - created.as_secs_f64();
        assert!(
            (ran - HOLD).abs() < 0.01,
            "ended {ran} s after its creation"
        );
    }

    // Without the line, as moto finished it (patch_operations_end_when_they_finish: at once).
    std::fs::write(&faults, "").unwrap();
    let (status, end, created) = described("held-1").await;
    assert_eq!(status, succeeded);
    assert!(end.expect("an EndTimestamp").as_secs_f64() - created.as_secs_f64() < 1.0);
}
