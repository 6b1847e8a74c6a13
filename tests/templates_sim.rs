//! Following the vendor's template publications, with the controller on `sim` and a real HTTP server on
//! 127.0.0.1 (real time: real sockets). The daemon's poller is `TemplateSource::poll`, called here by hand, so
//! every step is explicit: publish, poll, reconcile.

use crate::templates_support::*;
use stacksetd::cli::output::{self, Planned};
use stacksetd::controller::{self, Context, DeploymentState, Report, TemplateReport};
use stacksetd::desired::Deployment;
use stacksetd::template::Poll;

async fn converge(deployment: &Deployment, ctx: &Context, state: &mut DeploymentState) -> Report {
    let outcome = controller::converge(deployment, ctx, state, |_| {})
        .await
        .unwrap_or_else(|e| panic!("converge failed: {e}"));
    outcome.report
}

fn template_of(report: &Report) -> &TemplateReport {
    report
        .template
        .as_ref()
        .expect("a pass reports its template")
}

async fn poll(ctx: &Context, url: &str) -> Poll {
    ctx.templates.poll(url, &["aimably"]).await
}

async fn plan_text(deployment: &Deployment, ctx: &Context, state: &mut DeploymentState) -> String {
    let result = controller::dry_run(deployment, ctx, state).await;
    output::plan_text(&[Planned { deployment, result }])
}

#[tokio::test]
async fn a_publication_is_applied_once_and_unchanged_polls_cost_one_304() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let d = deployment(&format!("{{policy: DataOnly, url: \"{}\"}}", server.url()));

    let report = converge(&d, &ctx, state).await;
    assert_eq!(
        applied(&sim).as_deref(),
        Some(v1().as_str()),
        "the exact verified bytes are applied"
    );
    assert_eq!(template_of(&report).sha256, sha(&v1()));
    assert_eq!(server.counts().requests, 1, "the run fetched once");

    // Passes reuse the version held: no fetch, even when the server has something new.
    server.publish(&v2());
    converge(&d, &ctx, state).await;
    assert_eq!(
        server.counts().requests,
        1,
        "a pass never fetches once a version is held"
    );
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);

    // The poll sees v2; the next passes apply it exactly once.
    let changed = poll(&ctx, &server.url()).await;
    assert!(
        matches!(&changed, Poll::Changed { sha256, .. } if *sha256 == sha(&v2())),
        "{changed:?}"
    );
    let report = converge(&d, &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(applied(&sim).as_deref(), Some(v2().as_str()));
    let t = template_of(&report);
    assert_eq!(t.applied_sha256.as_deref(), Some(sha(&v2()).as_str()));
    assert_eq!(t.decision, "up_to_date");
    assert!(!t.update_available);

    // Unchanged: each poll is one request answered 304; nothing else happens.
    let before = server.counts();
    const POLLS: u64 = 5;
    for _ in 0..POLLS {
        assert!(matches!(poll(&ctx, &server.url()).await, Poll::Unchanged));
        converge(&d, &ctx, state).await;
    }
    let after = server.counts();
    assert_eq!(
        after.requests - before.requests,
        POLLS,
        "one request per poll"
    );
    assert_eq!(
        after.not_modified - before.not_modified,
        POLLS,
        "all answered 304"
    );
    assert_eq!(after.full, before.full, "no body sent again");
    assert_eq!(calls(&sim, "UpdateStackSet"), 1, "304s cause no update");
    println!(
        "unchanged template: {} request(s) and {} bytes per poll ({} bytes sent, {} received)",
        (after.requests - before.requests) / POLLS,
        (after.bytes_in + after.bytes_out - before.bytes_in - before.bytes_out) / POLLS,
        (after.bytes_in - before.bytes_in) / POLLS,
        (after.bytes_out - before.bytes_out) / POLLS,
    );
}

#[tokio::test]
async fn a_pin_holds_against_a_new_publication_and_before_creation() {
    let server = TemplateServer::start().await;
    server.publish(&v2());
    let sim = sim();
    let pinned_v1 = format!(
        "{{policy: DataOnly, url: \"{}\", sha256: {}}}",
        server.url(),
        sha(&v1())
    );
    // The first version is subject to the pin: v2 served, v1 pinned -> nothing is created.
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let err = controller::reconcile(&deployment(&pinned_v1), &ctx, state)
        .await
        .expect_err("a pinned digest that is not served creates nothing");
    assert_eq!(err.metric_label(), "template_pin_mismatch", "{err}");
    assert!(applied(&sim).is_none());

    server.publish(&v1());
    let ctx = context(&sim);
    converge(&deployment(&pinned_v1), &ctx, state).await;
    assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()));

    server.publish(&v2());
    assert!(matches!(
        poll(&ctx, &server.url()).await,
        Poll::Changed { .. }
    ));
    let report = converge(&deployment(&pinned_v1), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 0, "the pin holds");
    assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()));
    let t = template_of(&report);
    assert_eq!(t.decision, "pin_mismatch");
    assert!(t.update_available);
    assert_eq!(t.sha256, sha(&v2()), "the new content is reported");
    assert!(t.message.contains("never applied"), "{}", t.message);
}

#[tokio::test]
async fn manual_reports_the_new_version_and_applies_it_once_pinned() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let manual = format!(
        "{{policy: DataOnly, url: \"{}\", updates: Manual}}",
        server.url()
    );
    // Manual means manual: not even the first version is applied without a pin.
    let err = controller::converge(&deployment(&manual), &ctx, state, |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("spec.template.sha256: {}", sha(&v1()))),
        "{err}"
    );
    assert!(applied(&sim).is_none(), "nothing created");
    let first_pinned = format!(
        "{{policy: DataOnly, url: \"{}\", updates: Manual, sha256: {}}}",
        server.url(),
        sha(&v1())
    );
    converge(&deployment(&first_pinned), &ctx, state).await;
    assert_eq!(
        applied(&sim).as_deref(),
        Some(v1().as_str()),
        "the first version is applied once pinned"
    );

    server.publish(&v2());
    poll(&ctx, &server.url()).await;
    let report = converge(&deployment(&manual), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 0, "Manual waits");
    let t = template_of(&report);
    assert_eq!(t.decision, "held_manual");
    assert!(t.update_available);
    assert!(
        t.message.contains(&sha(&v2())),
        "the message names the digest to pin: {}",
        t.message
    );
    assert!(
        t.iam_diff.iter().any(|l| l.contains("s3:ListAllMyBuckets")),
        "the IAM diff names the removed action: {:?}",
        t.iam_diff
    );
    let text = plan_text(&deployment(&manual), &ctx, state).await;
    assert!(
        text.contains(&format!("template sha256:{}", sha(&v2()))),
        "{text}"
    );
    assert!(
        text.contains("IAM diff") && text.contains("s3:ListAllMyBuckets"),
        "{text}"
    );
    assert!(
        !text.contains("UpdateStackSet"),
        "no template change is proposed:\n{text}"
    );

    let pinned = format!(
        "{{policy: DataOnly, url: \"{}\", updates: Manual, sha256: {}}}",
        server.url(),
        sha(&v2())
    );
    let text = plan_text(&deployment(&pinned), &ctx, state).await;
    assert!(
        text.contains("UpdateStackSet") && text.contains("template:"),
        "{text}"
    );
    let report = converge(&deployment(&pinned), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 1, "applied once pinned");
    assert_eq!(applied(&sim).as_deref(), Some(v2().as_str()));
    assert!(!template_of(&report).update_available);
}

#[tokio::test]
async fn a_widening_version_is_held_with_its_diff_unless_allowed() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let auto = format!("{{policy: DataOnly, url: \"{}\"}}", server.url());
    converge(&deployment(&auto), &ctx, state).await;

    let wider = role_template("Aimably v2 wider", WIDER_ACTIONS);
    server.publish(&wider);
    poll(&ctx, &server.url()).await;
    let report = converge(&deployment(&auto), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 0, "held");
    let t = template_of(&report);
    assert_eq!(t.decision, "held_permission_widening");
    assert!(t.update_available);
    assert!(
        t.iam_diff
            .iter()
            .any(|l| l.contains("+ cloudwatch:GetMetricData (Read)")),
        "{:?}",
        t.iam_diff
    );
    let planned = [Planned {
        deployment: &deployment(&auto),
        result: controller::dry_run(&deployment(&auto), &ctx, state).await,
    }];
    let json = serde_json::to_value(output::plan_json(
        &planned,
        output::OrphanScan::Found(vec![]),
    ))
    .unwrap();
    let entry = &json["deployments"][0];
    assert_eq!(entry["template"]["decision"], "held_permission_widening");
    assert_eq!(entry["template"]["sha256"], sha(&wider));
    assert_eq!(entry["templateSha256"], sha(&wider));
    assert_eq!(json["changes"], 0, "{json}");

    let allowed = format!(
        "{{policy: DataOnly, url: \"{}\", allowPermissionWidening: true}}",
        server.url()
    );
    converge(&deployment(&allowed), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(applied(&sim).as_deref(), Some(wider.as_str()));
}

#[tokio::test]
async fn a_data_only_version_with_write_actions_is_refused_outright() {
    let server = TemplateServer::start().await;
    let writer = role_template("Aimably v2 writes", WRITE_ACTIONS);
    // Even as the first version, and even with widening allowed.
    server.publish(&writer);
    let sim = sim();
    let allowed = format!(
        "{{policy: DataOnly, url: \"{}\", allowPermissionWidening: true}}",
        server.url()
    );
    let err = controller::reconcile(
        &deployment(&allowed),
        &context(&sim),
        &mut Default::default(),
    )
    .await
    .expect_err("refused before creation");
    assert_eq!(err.metric_label(), "template_refused_allowlist");
    assert!(err.to_string().contains("ec2:StopInstances"), "{err}");
    assert!(applied(&sim).is_none());

    server.publish(&v1());
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    converge(&deployment(&allowed), &ctx, state).await;
    server.publish(&writer);
    poll(&ctx, &server.url()).await;
    let report = converge(&deployment(&allowed), &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);
    assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()));
    let t = template_of(&report);
    assert_eq!(t.decision, "refused_allowlist");
    assert!(
        t.offenses.iter().any(|o| o.action == "ec2:StopInstances"),
        "{:?}",
        t.offenses
    );
    let text = plan_text(&deployment(&allowed), &ctx, state).await;
    assert!(text.contains("refused: ec2:StopInstances"), "{text}");
}

#[tokio::test]
async fn every_failure_kind_leaves_the_applied_template_untouched() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let d = deployment(&format!("{{policy: DataOnly, url: \"{}\"}}", server.url()));
    converge(&d, &ctx, state).await;

    type Setup = Box<dyn Fn(&TemplateServer)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        ("404", Box::new(|s| s.remove(PATH)), "template_http_status"),
        (
            "503",
            Box::new(|s| s.set_mode(Mode::Status(503))),
            "template_http_status",
        ),
        (
            "timeout",
            Box::new(|s| s.set_mode(Mode::Hang(std::time::Duration::from_secs(3)))),
            "template_timeout",
        ),
        (
            "oversize",
            Box::new(|s| {
                s.publish_at(
                    PATH,
                    format!("{{\"D\": \"{}\"}}", "x".repeat(1_100_000)).as_bytes(),
                )
            }),
            "template_too_large",
        ),
        (
            "unparsable",
            Box::new(|s| s.publish("{\"Resources\": [unclosed")),
            "template_unparsable",
        ),
        (
            "not UTF-8",
            Box::new(|s| s.publish_at(PATH, b"\xff\xfe{}")),
            "template_unparsable",
        ),
    ];
    for (kind, setup, label) in cases {
        setup(&server);
        let result = poll(&ctx, &server.url()).await;
        match &result {
            Poll::Failed(e) => assert_eq!(e.metric_label(), label, "{kind}: {e}"),
            other => panic!("{kind}: expected a failure, got {other:?}"),
        }
        let report = converge(&d, &ctx, state).await;
        assert_eq!(calls(&sim, "UpdateStackSet"), 0, "{kind}: nothing updated");
        assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()), "{kind}");
        let t = template_of(&report);
        assert_eq!(t.sha256, sha(&v1()), "{kind}: the version held stays");
        let source = t.source.as_ref().expect("fetch state reported");
        assert_eq!(source.last_result.as_deref(), Some(label), "{kind}");
        assert!(source.last_error.is_some(), "{kind}");
        let text = plan_text(&d, &ctx, state).await;
        assert!(
            text.contains("no changes") && text.contains("last template fetch failed"),
            "{kind}:\n{text}"
        );
        server.set_mode(Mode::Normal);
        server.publish(&v1());
    }
    // Recovery: the same bytes again are not a change (and clear the error).
    assert!(matches!(poll(&ctx, &server.url()).await, Poll::Unchanged));
    assert!(
        ctx.templates
            .state(&server.url())
            .unwrap()
            .last_error
            .is_none()
    );

    // A digest mismatch (a pin on other content) is reported, never applied.
    server.publish(&v2());
    poll(&ctx, &server.url()).await;
    let pinned = deployment(&format!(
        "{{policy: DataOnly, url: \"{}\", sha256: {}}}",
        server.url(),
        sha(&v1())
    ));
    let report = converge(&pinned, &ctx, state).await;
    assert_eq!(template_of(&report).decision, "pin_mismatch");
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);
    assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()));
}

#[tokio::test]
async fn a_version_over_the_template_body_limit_is_refused_not_sent_elsewhere() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let d = deployment(&format!("{{policy: DataOnly, url: \"{}\"}}", server.url()));
    converge(&d, &ctx, state).await;
    let big = role_template(&"x".repeat(60_000), V2_ACTIONS);
    server.publish(&big);
    assert!(matches!(
        poll(&ctx, &server.url()).await,
        Poll::Changed { .. }
    ));
    let report = converge(&d, &ctx, state).await;
    let t = template_of(&report);
    assert_eq!(t.decision, "too_large");
    assert!(t.message.contains("51200"), "{}", t.message);
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);
    assert_eq!(applied(&sim).as_deref(), Some(v1().as_str()));
}

#[tokio::test]
async fn a_policy_level_change_is_a_normal_update_with_its_iam_diff() {
    let server = TemplateServer::start().await;
    let data_only = role_template("Aimably data only", V1_ACTIONS);
    let scheduling = role_template(
        "Aimably data and scheduling",
        &[
            "ce:GetCostAndUsage",
            "ec2:DescribeInstances",
            "s3:ListAllMyBuckets",
            "ec2:StartInstances",
            "ec2:StopInstances",
        ],
    );
    server.publish_at(
        "/mirror/AimablyStackSetTemplateDataOnly.json",
        data_only.as_bytes(),
    );
    server.publish_at(
        "/mirror/AimablyStackSetTemplateDataAndScheduling.json",
        scheduling.as_bytes(),
    );
    let sim = sim();
    let mut config = config();
    config.catalog_base_url = server.url_of("/mirror/");
    let ctx = Context::new(std::sync::Arc::new(sim.clone()), config);
    let state = &mut DeploymentState::default();
    converge(&deployment("{policy: DataOnly}"), &ctx, state).await;
    assert_eq!(
        applied(&sim).as_deref(),
        Some(data_only.as_str()),
        "the catalog URL of the level"
    );

    // Under Auto the new level's extra permissions are a widening: held, shown with the diff.
    let level = deployment("{policy: DataAndScheduling}");
    let report = converge(&level, &ctx, state).await;
    assert_eq!(template_of(&report).decision, "held_permission_widening");
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);

    let allowed = deployment("{policy: DataAndScheduling, allowPermissionWidening: true}");
    let text = plan_text(&allowed, &ctx, state).await;
    assert!(text.contains("UpdateStackSet"), "{text}");
    assert!(
        text.contains(&format!("template sha256:{}", sha(&scheduling))),
        "{text}"
    );
    assert!(text.contains("+ ec2:StopInstances (Write)"), "{text}");
    converge(&allowed, &ctx, state).await;
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(applied(&sim).as_deref(), Some(scheduling.as_str()));
}

/// A template over CloudFormation's 51,200-byte TemplateBody limit: the role template padded with Metadata.
fn large_template(description: &str, actions: &[&str]) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&role_template(description, actions)).unwrap();
    doc["Metadata"] = serde_json::json!({"Padding": "x".repeat(60_000)});
    serde_json::to_string_pretty(&doc).unwrap()
}

#[tokio::test]
async fn a_template_over_the_body_limit_is_staged_by_digest_or_refused_without_a_bucket() {
    let server = TemplateServer::start().await;
    let big = large_template("Aimably large", V1_ACTIONS);
    assert!(big.len() > 51_200);
    server.publish(&big);
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();

    // Without a staging bucket: refused with the fix, nothing created.
    let plain = deployment(&format!("{{policy: DataOnly, url: \"{}\"}}", server.url()));
    let err = controller::converge(&plain, &ctx, state, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stagingBucket"), "{err}");
    assert!(applied(&sim).is_none());
    assert_eq!(calls(&sim, "PutObject"), 0);

    // With one: exactly the checked bytes are uploaded under their digest and passed by URL.
    let staged = deployment(&format!(
        "{{policy: DataOnly, url: \"{}\", stagingBucket: operator-templates}}",
        server.url()
    ));
    converge(&staged, &ctx, state).await;
    assert_eq!(
        applied(&sim).as_deref(),
        Some(big.as_str()),
        "the stack set has exactly these bytes"
    );
    assert_eq!(calls(&sim, "PutObject"), 1);
    assert_eq!(
        stacksetd::template::staging_key(&big),
        format!("stacksetd/{}.json", sha(&big))
    );
    // Converged: nothing staged again.
    converge(&staged, &ctx, state).await;
    assert_eq!(calls(&sim, "PutObject"), 1);

    // A narrowing publication, also large, goes the same way.
    let next = large_template("Aimably large v2", V2_ACTIONS);
    server.publish(&next);
    poll(&ctx, &server.url()).await;
    converge(&staged, &ctx, state).await;
    assert_eq!(applied(&sim).as_deref(), Some(next.as_str()));
    assert_eq!(calls(&sim, "PutObject"), 2);
}

#[tokio::test]
async fn access_analyzer_holds_a_version_it_finds_new_access_in() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let checked = deployment(&format!(
        "{{policy: DataOnly, url: \"{}\", accessAnalyzer: true}}",
        server.url()
    ));
    converge(&checked, &ctx, state).await;
    assert_eq!(
        calls(&sim, "CheckNoNewAccess"),
        0,
        "the first version has nothing to compare with"
    );

    // The guard lets a narrowing through; the simulator's analyzer reports any changed document as new access.
    server.publish(&v2());
    poll(&ctx, &server.url()).await;
    let report = converge(&checked, &ctx, state).await;
    let t = template_of(&report);
    assert_eq!(t.decision, "held_access_analyzer", "{t:?}");
    assert!(
        t.iam_diff
            .iter()
            .any(|l| l.starts_with("IAM Access Analyzer: role AimablyMemberRole")),
        "{:?}",
        t.iam_diff
    );
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);
    let asked = calls(&sim, "CheckNoNewAccess");
    assert_eq!(asked, 1, "one changed document, one charged check");
    converge(&checked, &ctx, state).await;
    assert_eq!(
        calls(&sim, "CheckNoNewAccess"),
        asked,
        "asked once per version"
    );

    // Without the option the same narrowing is applied.
    let unchecked = deployment(&format!("{{policy: DataOnly, url: \"{}\"}}", server.url()));
    converge(&unchecked, &ctx, state).await;
    assert_eq!(applied(&sim).as_deref(), Some(v2().as_str()));
}

/// `spec.managementAccount`: the management account's stack follows the stack set's template decisions exactly:
/// a narrowing version reaches it after the stack set, a widening one held for the stack set is held for it too.
#[tokio::test]
async fn the_management_account_stack_gets_only_the_versions_the_stack_set_gets() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let ctx = context(&sim);
    let state = &mut DeploymentState::default();
    let yaml = deployment_yaml(
        "aimably",
        &format!("{{policy: DataOnly, url: \"{}\"}}", server.url()),
    ) + "  managementAccount: {deploy: true}\n";
    let d = stacksetd::desired::parse_str(&yaml, std::path::Path::new("t.yaml"))
        .expect("valid")
        .remove(0);
    let stack_body = || sim.stack_template_body("us-east-1", STACK_SET);
    converge(&d, &ctx, state).await;
    assert_eq!(stack_body().as_deref(), Some(v1().as_str()));

    // A widening version: held for both.
    server.publish(&role_template("Aimably v2 wider", WIDER_ACTIONS));
    poll(&ctx, &server.url()).await;
    let report = converge(&d, &ctx, state).await;
    assert_eq!(template_of(&report).decision, "held_permission_widening");
    assert_eq!(calls(&sim, "UpdateStackSet"), 0);
    assert_eq!(calls(&sim, "UpdateStack"), 0);
    assert_eq!(stack_body().as_deref(), Some(v1().as_str()));

    // A narrowing one: applied to the stack set, then to the stack, the same bytes.
    server.publish(&v2());
    poll(&ctx, &server.url()).await;
    converge(&d, &ctx, state).await;
    assert_eq!(applied(&sim).as_deref(), Some(v2().as_str()));
    assert_eq!(stack_body().as_deref(), Some(v2().as_str()));
    assert_eq!(
        (calls(&sim, "UpdateStackSet"), calls(&sim, "UpdateStack")),
        (1, 1)
    );
    let tags = sim.stack("us-east-1", STACK_SET).expect("stack").tags;
    assert_eq!(
        tags.get(stacksetd::controller::ownership::TEMPLATE_TAG)
            .map(String::as_str),
        Some(sha(&v2()).as_str()),
        "the approval record on the stack too"
    );
}
