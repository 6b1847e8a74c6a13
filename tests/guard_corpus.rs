//! The guard on real vendors' published template histories (tests/guard_corpus; SOURCES.md there names every
//! file's repository, path and commit, and what each change does). Every change is judged both ways (a vendor
//! rolling back is a change too), with the findings it must name; every template also goes through
//! `template check` (the guard's review) under both policy levels without a crash, within the work budget.

use std::path::PathBuf;

use stacksetd::desired::PolicyLevel;
use stacksetd::guard::{self, Parameters};
use stacksetd::template::Template;

/// One published change.
struct Change {
    old: &'static str,
    new: &'static str,
    /// Deployment parameters (`spec.parameters`) the change is judged with; the templates' defaults otherwise.
    parameters: &'static [(&'static str, &'static str)],
    /// old -> new is widening.
    widening: bool,
    /// new -> old (the vendor rolling back) is widening.
    back: bool,
    /// Substrings the findings of old -> new must contain.
    names: &'static [&'static str],
}

const fn change(
    old: &'static str,
    new: &'static str,
    widening: bool,
    back: bool,
    names: &'static [&'static str],
) -> Change {
    Change {
        old,
        new,
        parameters: &[],
        widening,
        back,
        names,
    }
}

/// The expected judgment of every change in the corpus. Where it differs from SOURCES.md's first reading, the
/// reason is beside it.
const CHANGES: &[Change] = &[
    // Datadog: the trusted account becomes a parameter whose default is the same account: with the template's
    // defaults it trusts exactly what it trusted (a deployment that sets another value approves it itself).
    change(
        "datadog/datadog_integration_role@04a3a5aae8.yaml",
        "datadog/datadog_integration_role@e49704c91a.yaml",
        false,
        false,
        &[],
    ),
    // A second macro-generated policy: CloudFormation's macro output is not what stacksetd can judge.
    change(
        "datadog/datadog_integration_role@e49704c91a.yaml",
        "datadog/datadog_integration_role@ddbd7464c6.yaml",
        true,
        true,
        &["template: adds Fn::Transform", "CloudTrail"],
    ),
    change(
        "datadog/datadog_integration_role@ddbd7464c6.yaml",
        "datadog/datadog_integration_role@4696b03b0b.yaml",
        false,
        false,
        &[],
    ),
    change(
        "datadog/datadog_integration_role@64ac1c2bac.yaml",
        "datadog/datadog_integration_role@4f7714c21a.yaml",
        false,
        true,
        &["- lambda:AddPermission, lambda:RemovePermission"],
    ),
    // SecurityAudit replaces 53 inline actions, behind a parameter that defaults to off: nothing changes with the
    // defaults; with the feature on it is a managed policy whose content the template does not show (next row).
    change(
        "datadog/datadog_integration_role@5dda32a952.yaml",
        "datadog/datadog_integration_role@c892ea0c1c.yaml",
        false,
        false,
        &[],
    ),
    Change {
        old: "datadog/datadog_integration_role@5dda32a952.yaml",
        new: "datadog/datadog_integration_role@c892ea0c1c.yaml",
        parameters: &[
            ("ResourceCollectionPermissions", "true"),
            ("CloudSecurityPostureManagementPermissions", "true"),
        ],
        widening: true,
        back: true,
        names: &["+ managed policy arn:aws:iam::aws:policy/SecurityAudit"],
    },
    // The narrowing built with Fn::If: support:* -> support:DescribeTrustedAdvisor* and RefreshTrustedAdvisorCheck.
    change(
        "datadog/datadog_integration_role@dd69cb9ad7.yaml",
        "datadog/datadog_integration_role@d6d30e9f29.yaml",
        false,
        true,
        &["- support:*"],
    ),
    change(
        "datadog/datadog_integration_role@d6d30e9f29.yaml",
        "datadog/datadog_integration_role@d613ef0603.yaml",
        true,
        false,
        &["+ events:CreateEventBus (Write)", "+ organizations:List*"],
    ),
    // A typo fixed into a real action: the new name is new, and the catalog knows its level.
    change(
        "datadog/datadog_integration_role@5f60ba5de6.yaml",
        "datadog/datadog_integration_role@784cf22a3a.yaml",
        true,
        true,
        &["+ ec2:GetTransitGatewayPrefixListReferences (List)"],
    ),
    change(
        "datadog/datadog_integration_role@7ce3400b5b.yaml",
        "datadog/datadog_integration_role@b063c7c063.yaml",
        false,
        true,
        &["- keyspaces:GetTable"],
    ),
    change(
        "datadog/datadog_integration_role@44402ecc78.yaml",
        "datadog/datadog_integration_role@1e903ee3c0.yaml",
        true,
        false,
        &[
            "+ outposts:ListOutposts (List)",
            "+ outposts:ListSites (List)",
        ],
    ),
    // Lacework.
    change(
        "lacework/org-cfg-member@0f77ceeff5.yml",
        "lacework/org-cfg-member@2ea8160ab9.yml",
        false,
        false,
        &[],
    ),
    // The ExternalId becomes a value derived from the stack id, and the custom resource sends a different
    // payload to the vendor: both are changes stacksetd cannot prove harmless (SOURCES.md reads it as neutral).
    change(
        "lacework/org-cfg-member@2ea8160ab9.yml",
        "lacework/org-cfg-member@a2c12f106d.yml",
        true,
        true,
        &[
            "condition sts:ExternalId changed",
            "resource LaceworkSnsCustomResource (Custom::LaceworkSnsCustomResource) changed",
        ],
    ),
    change(
        "lacework/org-cfg-member@75a2db4e27.yml",
        "lacework/org-cfg-member@76a75ef7d4.yml",
        true,
        true,
        &[
            "+ iam:ListAccountAliases (List)",
            "+ cloudtrail:DescribeTrails (Read)",
        ],
    ),
    change(
        "lacework/org-cfg-member@a7c7058891.yml",
        "lacework/org-cfg-member@4625acbb40.yml",
        false,
        false,
        &[],
    ),
    // A second trusted account, chosen by a condition on a parameter: found in the case that selects it.
    change(
        "lacework/org-cfg-member@4625acbb40.yml",
        "lacework/org-cfg-member@854cc4cb47.yml",
        true,
        true,
        &[
            "+ principal AWS:arn:aws:iam::249446771485:role/lacework-platform (when LaceworkAccount is",
        ],
    ),
    change(
        "lacework/org-cfg-member@96318a3703.yml",
        "lacework/org-cfg-member@ce596cf821.yml",
        true,
        true,
        &["+ notifications:GetEventRule (Read)"],
    ),
    // Both versions over 51,200 bytes (a staging bucket deploys them).
    change(
        "lacework/org-cfg-member@ce596cf821.yml",
        "lacework/org-cfg-member@6bf9164950.yml",
        true,
        false,
        &["+ cassandra:Select (Read)"],
    ),
    // The trusted account becomes a parameter (same default) and the registration custom resource's ServiceToken
    // loses its default: the resource sent to the vendor changed.
    change(
        "lacework/ct-cfg-member@c4ddb0d489.yml",
        "lacework/ct-cfg-member@3749b23717.yml",
        true,
        true,
        &["resource LaceworkSnsCustomResource (Custom::LaceworkSnsCustomResource) changed"],
    ),
    change(
        "lacework/ct-cfg-member@801792281d.yaml",
        "lacework/ct-cfg-member@f92279c913.yaml",
        false,
        false,
        &[],
    ),
    // CloudZero.
    change(
        "cloudzero/resource_owner@838d56d724.yaml",
        "cloudzero/resource_owner@a5b04b815e.yaml",
        false,
        true,
        &["- managed policy arn:aws:iam::aws:policy/job-function/Billing"],
    ),
    change(
        "cloudzero/resource_owner@a5b04b815e.yaml",
        "cloudzero/resource_owner@d13d404597.yaml",
        true,
        true,
        &[
            "+ managed policy arn:aws:iam::aws:policy/ComputeOptimizerReadOnlyAccess",
            "+ cost-optimization-hub:GetRecommendation (Read)",
        ],
    ),
    change(
        "cloudzero/master_payer@60c27db8f6.yaml",
        "cloudzero/master_payer@ca82d9dbd4.yaml",
        false,
        true,
        &["- dynamodb:Get*"],
    ),
    change(
        "cloudzero/master_payer@6cdb7e829d.yaml",
        "cloudzero/master_payer@f7ab8f518e.yaml",
        true,
        true,
        &[
            "new resource CostAndUsageReportLambda (AWS::Lambda::Function): runs code from",
            "new resource CostAndUsageReportResource (Custom::CostAndUsageReport): sends data to",
            "+ s3:*",
        ],
    ),
    // The bucket list becomes a free-form parameter split on commas: what it names could be anything it holds.
    change(
        "cloudzero/master_payer@c66dce1e45.yaml",
        "cloudzero/master_payer@aa371c3aa1.yaml",
        true,
        true,
        &["MasterPayerBillingBucketName"],
    ),
    // Sysdig.
    change(
        "sysdig/CloudAgentlessRole@5dfc164958.yaml",
        "sysdig/CloudAgentlessRole@702c7b847b.yaml",
        false,
        false,
        &[],
    ),
    change(
        "sysdig/CloudAgentlessRole@e3afb31ffd.yaml",
        "sysdig/CloudAgentlessRole@20f2d71d64.yaml",
        true,
        true,
        &["+ macie2:ListClassificationJobs (List)"],
    ),
    change(
        "sysdig/foundational@1b82efe53c.yaml",
        "sysdig/foundational@f3db8e5cb2.yaml",
        true,
        false,
        &[
            "+ bedrock:ListAgents (List)",
            "+ bedrock:GetKnowledgeBase (Read)",
        ],
    ),
    // CrowdStrike (all over 51,200 bytes): Lambda code and the CopyZips custom resource change with every
    // feature, so each version is held; the guard names what changed.
    change(
        "crowdstrike/crowdstrike_init_stack@2f3640f330.yaml",
        "crowdstrike/crowdstrike_init_stack@1573fcecbc.yaml",
        true,
        true,
        &[
            "+ organizations:ListParents (List)",
            "resource OrgIdLambdaFunction (AWS::Lambda::Function) changed: runs code from",
        ],
    ),
    change(
        "crowdstrike/crowdstrike_init_stack@114465655b.yaml",
        "crowdstrike/crowdstrike_init_stack@94cb4372e5.yaml",
        true,
        true,
        &["resource CopyZips (Custom::CopyZips) changed"],
    ),
    change(
        "crowdstrike/crowdstrike_init_stack@94cb4372e5.yaml",
        "crowdstrike/crowdstrike_init_stack@1929a969c2.yaml",
        true,
        true,
        &[
            "resource CopyZips (Custom::CopyZips) changed",
            "- secretsmanager:GetSecretValue",
        ],
    ),
    // Spot.
    change(
        "spot/finops-restricted-read-only@80787b20b5.json",
        "spot/finops-restricted-read-only@79f289f6f6.json",
        true,
        true,
        &[
            "trust of role SpotByNetApp_Finops_ReadOnly: + principal AWS:arn:aws:iam::884866656237:root",
        ],
    ),
    change(
        "spot/finops-restricted-read-only@13ccf22b3b.json",
        "spot/finops-restricted-read-only@5e5dca5693.json",
        true,
        true,
        &[
            "+ cloudformation:Describe*",
            "+ payments:GetPaymentStatus (Read)",
        ],
    ),
    // An ExternalId condition added to the trust: narrowing; removing it again is named as such.
    change(
        "spot/finops-restricted-read-only@5e5dca5693.json",
        "spot/finops-restricted-read-only@bb857f53fc.json",
        false,
        true,
        &[],
    ),
    change(
        "dynatrace/role_based_access_no_AG@feb9d2c9d6.yml",
        "dynatrace/role_based_access_no_AG@75b784faf9.yml",
        false,
        false,
        &[],
    ),
    // New Relic.
    change(
        "newrelic/newrelic-stack-set@5f912f0f61.yml",
        "newrelic/newrelic-stack-set@ce5120ec78.yml",
        false,
        false,
        &[],
    ),
    change(
        "newrelic/newrelic-stack-set@1fef76e024.yml",
        "newrelic/newrelic-stack-set@b9bbf8b7e8.yml",
        true,
        true,
        &[
            "new resource CloudWatchMetricStreamsStack (AWS::CloudFormation::Stack): installs the template at",
            "+ managed policy arn:${AWS::Partition}:iam::aws:policy/ReadOnlyAccess",
        ],
    ),
    change(
        "newrelic/newrelic-stack-set@b9bbf8b7e8.yml",
        "newrelic/newrelic-stack-set@7b78bc4931.yml",
        true,
        false,
        &[
            "new resource InstallNewrelicInfrastructureAgentInEc2InstancesStack (AWS::CloudFormation::Stack)",
        ],
    ),
    // A KMS key policy narrowed (wildcards to explicit actions, a kms:CallerAccount condition added): judged by
    // its statements, so the narrowing goes through.
    change(
        "trendmicro/conformity-lifecycle@01b719b1dd.yaml",
        "trendmicro/conformity-lifecycle@6b9692de76.yaml",
        false,
        true,
        &["resource policy of SecretEncryptionKey (AWS::KMS::Key): - kms:Create*"],
    ),
    change(
        "cloudcheckr/cc_aws_cfn_iam_stack@36cd6fe2c8.json",
        "cloudcheckr/cc_aws_cfn_iam_stack@8f30ba15f2.json",
        false,
        false,
        &[],
    ),
    change(
        "cloudcheckr/cc_aws_cfn_iam_stack@8f30ba15f2.json",
        "cloudcheckr/cc_aws_cfn_iam_stack@18d3012686.json",
        false,
        true,
        &["- s3:GetObject"],
    ),
    // Deepwatch: queue policies opened to every principal.
    change(
        "deepwatch/deepwatch-logging-resource-configuration@8c1f5ed16b.yaml",
        "deepwatch/deepwatch-logging-resource-configuration@daedfec530.yaml",
        true,
        true,
        &[
            "resource policy of rGuardDutyDeadLetterQueuePolicy (AWS::SQS::QueuePolicy): + principal *",
        ],
    ),
    change(
        "deepwatch/deepwatch-logging-resource-configuration@254217320d.yaml",
        "deepwatch/deepwatch-logging-resource-configuration@fd99ea6e8c.yaml",
        true,
        false,
        &[
            "+ kms:Decrypt (Write)",
            "+ s3:GetObjectVersion (Read; returns",
            "new resource rGetS3KmsKeyIdLambdaFunction (AWS::Lambda::Function)",
        ],
    ),
];

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guard_corpus")
        .join(file)
}

fn load(file: &str) -> Template {
    let text = std::fs::read_to_string(path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    Template::from_body(&format!("file:///{file}"), text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_published_change_is_judged_as_stated_both_ways() {
    let mut failures = Vec::new();
    let (mut widening, mut narrowing) = (0, 0);
    for (i, c) in CHANGES.iter().enumerate() {
        let params: Parameters = c
            .parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (old, new) = (load(c.old), load(c.new));
        let forward =
            guard::judge(&old.document, &new.document, &params).expect("within the work budget");
        let back =
            guard::judge(&new.document, &old.document, &params).expect("within the work budget");
        let lines = forward.lines();
        let mut problems = Vec::new();
        if forward.widening != c.widening {
            problems.push(format!(
                "judged widening={} (want {})",
                forward.widening, c.widening
            ));
        }
        if back.widening != c.back {
            problems.push(format!(
                "rolled back: widening={} (want {})",
                back.widening, c.back
            ));
        }
        for name in c.names {
            if !lines.iter().any(|l| l.contains(name)) {
                problems.push(format!("no finding names {name:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "#{} {} -> {}: {}\n    {}",
                i + 1,
                c.old,
                c.new,
                problems.join("; "),
                forward.lines().join("\n    ")
            ));
        }
        if c.widening {
            widening += 1;
        } else {
            narrowing += 1;
        }
    }
    println!(
        "{} changes: {widening} widening, {narrowing} not",
        CHANGES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_the_corpus() {
    let vendors: std::collections::BTreeSet<&str> = CHANGES
        .iter()
        .map(|c| c.old.split('/').next().unwrap())
        .collect();
    assert!(vendors.len() >= 10, "{vendors:?}");
    assert!(CHANGES.len() >= 12);
    let tsv = std::fs::read_to_string(path("changes.tsv")).unwrap();
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            CHANGES.iter().any(|c| c.old == f[1] && c.new == f[2]),
            "changes.tsv row {} -> {} has no expected judgment",
            f[1],
            f[2]
        );
    }
}

#[test]
fn every_real_template_is_reviewed_without_a_crash() {
    let mut files = Vec::new();
    for vendor in std::fs::read_dir(path("")).unwrap() {
        let vendor = vendor.unwrap().path();
        if vendor.is_dir() {
            for f in std::fs::read_dir(&vendor).unwrap() {
                files.push(f.unwrap().path());
            }
        }
    }
    assert!(files.len() >= 40, "{}", files.len());
    let mut largest = (0, String::new());
    for file in files {
        let rel = file
            .strip_prefix(path(""))
            .unwrap()
            .to_string_lossy()
            .to_string();
        let t = load(&rel);
        if t.body.len() > largest.0 {
            largest = (t.body.len(), rel.clone());
        }
        for level in [
            None,
            Some(PolicyLevel::DataOnly),
            Some(PolicyLevel::DataAndScheduling),
        ] {
            let review = guard::review(&t.document, &Parameters::new(), level)
                .unwrap_or_else(|e| panic!("{rel}: {e}"));
            assert!(
                !review.resources.is_empty(),
                "{rel}: every resource is listed"
            );
            let (text, code) = stacksetd::cli::review::check(&t, level, &Parameters::new(), false);
            assert!(text.contains("resources:"), "{rel}");
            assert!(code <= 1);
        }
    }
    println!("largest: {} ({} bytes)", largest.1, largest.0);
    assert!(
        largest.0 > 51_200,
        "a template over the TemplateBody limit is in the corpus"
    );
}

/// The review commands as an operator runs them: `template check` and `template diff` on real versions, with the
/// documented exit codes.
#[test]
fn template_check_and_diff_report_with_their_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_stacksetd");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .output()
            .expect("stacksetd runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let old = path("datadog/datadog_integration_role@d6d30e9f29.yaml");
    let new = path("datadog/datadog_integration_role@d613ef0603.yaml");
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());

    let (code, text) = run(&["template", "diff", old, new]);
    assert_eq!(code, 2, "widening: {text}");
    assert!(
        text.contains("decision: held_permission_widening")
            && text.contains("! role DatadogIntegrationRole: + events:CreateEventBus (Write)"),
        "{text}"
    );
    let (code, text) = run(&["template", "diff", new, old]);
    assert_eq!(code, 0, "rolled back: {text}");
    let (code, json) = run(&["template", "diff", old, new, "--output", "json"]);
    assert_eq!(code, 2);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["widening"], true);
    assert!(
        doc["judgment"]["findings"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );

    let (code, text) = run(&["template", "check", new]);
    assert_eq!(code, 0, "no level asked: {text}");
    assert!(
        text.contains("DatadogIntegrationRole (AWS::IAM::Role; IAM identity)")
            && text.contains("permissions:"),
        "{text}"
    );
    let (code, text) = run(&["template", "check", new, "--policy", "DataOnly"]);
    assert_eq!(code, 1, "Datadog's role is not read-only: {text}");
    assert!(text.contains("level DataOnly: refused"), "{text}");

    let aimably = format!(
        "{}/config/templates/aimably-data-only.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, text) = run(&[
        "template",
        "check",
        &aimably,
        "--policy",
        "DataOnly",
        "--parameters",
        "ManagementAccountId=123456789012",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("level DataOnly: passes")
            && text.contains("warning: lambda:List* includes reads"),
        "{text}"
    );
    let (code, text) = run(&["template", "check", &aimably, "--policy", "DataOnly"]);
    assert_eq!(code, 1, "the trusted account must be given: {text}");
    assert!(text.contains("ManagementAccountId"), "{text}");
}
