//! One test per rule: each edits the valid document (`VALID`, whose line numbers the positions below refer to)
//! and asserts the problem's line, column, field and a key phrase of its message.
//!
//! Size: over 600 lines: one test per rule of the desired-state contract.

use crate::desired::parse::tests::{VALID, insert_key, one, problems};

fn ok(text: &str) {
    assert_eq!(problems(text), Vec::new());
}

fn with(old: &str, new: &str) -> String {
    assert!(VALID.contains(old), "`{old}` not in VALID");
    VALID.replacen(old, new, 1)
}

const TARGETS: &str = "spec.deploymentTargets";
const PREFS: &str = "spec.operationPreferences";

#[test]
fn api_version_and_kind() {
    let text = with("stacksetd.dev/v1alpha1", "stacksetd.dev/v1");
    one(
        &text,
        1,
        13,
        "apiVersion",
        "write `apiVersion: stacksetd.dev/v1alpha1`",
    );
    one(
        &with("kind: StackSetDeployment", "kind: StackSet"),
        2,
        7,
        "kind",
        "write `kind: StackSetDeployment`",
    );
}

#[test]
fn metadata_name_shape_and_length() {
    for bad in ["Aimably", "-aimably", "aimably-", "aim_ably", "\"\""] {
        one(
            &with("name: aimably", &format!("name: {bad}")),
            4,
            9,
            "metadata.name",
            "lowercase letters, digits and hyphens",
        );
    }
    let long = "a".repeat(64);
    one(
        &with("name: aimably", &format!("name: {long}")),
        4,
        9,
        "metadata.name",
        "1 to 63",
    );
    ok(&with("name: aimably", &format!("name: {}", "a".repeat(63))));
    ok(&with("name: aimably", "name: a-1"));
}

#[test]
fn names_and_stack_sets_are_unique_across_documents() {
    let other_set = VALID.replace("AimablyDataOnly", "Other");
    one(
        &format!("{VALID}---\n{other_set}"),
        27,
        9,
        "metadata.name",
        "already used by the document at line 4",
    );
    let other_name = VALID.replace("name: aimably", "name: other");
    one(
        &format!("{VALID}---\n{other_name}"),
        29,
        17,
        "spec.stackSetName",
        "already used by the document at line 6",
    );
    let both = other_name.replace("AimablyDataOnly", "Other");
    ok(&format!("{VALID}---\n{both}"));
}

#[test]
fn stack_set_name() {
    for bad in ["1Aimably", "Aimably_Data", "Aimably Data"] {
        one(
            &with("AimablyDataOnly", bad),
            6,
            17,
            "spec.stackSetName",
            "starting with a letter",
        );
    }
    one(
        &with("AimablyDataOnly", &"A".repeat(129)),
        6,
        17,
        "spec.stackSetName",
        "1 to 128",
    );
    ok(&with("AimablyDataOnly", &format!("A-{}", "b".repeat(126))));
}

#[test]
fn description_length() {
    one(
        &insert_key(VALID, "spec", "description: \"\""),
        6,
        16,
        "spec.description",
        "AWS allows 1 to 1024",
    );
    let long = format!("description: {}", "d".repeat(1025));
    one(
        &insert_key(VALID, "spec", &long),
        6,
        16,
        "spec.description",
        "has 1025 characters",
    );
    ok(&insert_key(
        VALID,
        "spec",
        &format!("description: {}", "é".repeat(1024)),
    ));
}

#[test]
fn management_account_id_digits() {
    let text = with("\"123456789012\"", "\"12345678901a\"");
    one(
        &text,
        7,
        24,
        "spec.managementAccountId",
        "exactly 12 digits",
    );
}

#[test]
fn template_needs_policy_or_url() {
    one(
        &with("    policy: DataOnly\n", "    updates: Auto\n"),
        8,
        3,
        "spec.template",
        "needs `policy`",
    );
    ok(&with(
        "    policy: DataOnly\n",
        "    url: https://example.com/t.json\n",
    ));
}

#[test]
fn template_url_schemes() {
    let url = |u: &str| insert_key(VALID, "spec.template", &format!("url: {u}"));
    for good in [
        "https://example.com/t.json",
        "http://127.0.0.1:8080/t.json",
        "http://127.9.9.9/t.json",
        "http://[::1]/t.json",
        "http://localhost/t.json",
        "file:///etc/stacksetd/t.json",
    ] {
        ok(&url(good));
    }
    one(
        &url("http://example.com/t.json"),
        9,
        10,
        "spec.template.url",
        "only allowed to loopback",
    );
    one(
        &url("http://10.0.0.1/t.json"),
        9,
        10,
        "spec.template.url",
        "only allowed to loopback",
    );
    one(
        &url("ftp://example.com/t.json"),
        9,
        10,
        "spec.template.url",
        "scheme `ftp` is not supported",
    );
    one(
        &url("file://relative/t.json"),
        9,
        10,
        "spec.template.url",
        "absolute path",
    );
    one(
        &url("example.com/t.json"),
        9,
        10,
        "spec.template.url",
        "is not a URL",
    );
}

#[test]
fn template_sha256() {
    let sha = |s: &str| insert_key(VALID, "spec.template", &format!("sha256: {s}"));
    one(
        &sha("abc"),
        9,
        13,
        "spec.template.sha256",
        "64 lowercase hex",
    );
    one(
        &sha(&"A".repeat(64)),
        9,
        13,
        "spec.template.sha256",
        "64 lowercase hex",
    );
    ok(&sha(&"0a".repeat(32)));
}

#[test]
fn parameter_names_and_count() {
    let text = insert_key(VALID, "spec", "parameters: {Good1: x, Bad-Name: y}");
    one(
        &text,
        6,
        26,
        "spec.parameters.Bad-Name",
        "parameter name `Bad-Name`",
    );
    let many: Vec<String> = (0..201).map(|i| format!("P{i}: v")).collect();
    let text = insert_key(
        VALID,
        "spec",
        &format!("parameters: {{{}}}", many.join(", ")),
    );
    one(&text, 6, 3, "spec.parameters", "at most 200");
}

#[test]
fn capabilities() {
    let text = insert_key(
        VALID,
        "spec",
        "capabilities: [CAPABILITY_IAM, CAPABILITY_IAM]",
    );
    one(&text, 6, 34, "spec.capabilities[1]", "listed twice");
    let text = insert_key(VALID, "spec", "capabilities: [CAPABILITY_AUTO_EXPAND]");
    one(
        &text,
        6,
        18,
        "spec.capabilities[0]",
        "do not support macros",
    );
    ok(&insert_key(VALID, "spec", "capabilities: []"));
}

#[test]
fn tags() {
    let tag = |t: &str| insert_key(VALID, "spec", &format!("tags: {{{t}}}"));
    one(
        &tag("\"aws:team\": x"),
        6,
        10,
        "spec.tags.aws:team",
        "reserved for AWS",
    );
    one(
        &tag(&format!("{}: x", "k".repeat(129))),
        6,
        10,
        &format!("spec.tags.{}", "k".repeat(129)),
        "1 to 128",
    );
    one(
        &tag(&format!("team: {}", "v".repeat(257))),
        6,
        16,
        "spec.tags.team",
        "at most 256",
    );
    let many: Vec<String> = (0..51).map(|i| format!("t{i}: v")).collect();
    one(&tag(&many.join(", ")), 6, 3, "spec.tags", "at most 50");
    ok(&tag("team: finops, \"empty\": \"\""));
}

#[test]
fn organizational_unit_ids() {
    let ous = |l: &str| {
        with(
            "organizationalUnitIds: [ROOT]",
            &format!("organizationalUnitIds: [{l}]"),
        )
    };
    let field = "spec.deploymentTargets.organizationalUnitIds";
    one(&ous(""), 11, 5, field, "at least one target");
    one(
        &ous("root"),
        11,
        29,
        &format!("{field}[0]"),
        "write ROOT in capitals",
    );
    one(
        &ous("ou-ab12"),
        11,
        29,
        &format!("{field}[0]"),
        "an OU id (ou-xxxx-yyyyyyyy)",
    );
    one(
        &ous("ROOT, ROOT"),
        11,
        35,
        &format!("{field}[1]"),
        "listed twice",
    );
    let many: Vec<String> = (0..51).map(|i| format!("ou-ab12-{i:08}")).collect();
    one(&ous(&many.join(", ")), 11, 5, field, "at most 50");
    ok(&ous("r-ab12, ou-ab12-cdef5678"));
}

/// `VALID` with accounts on line 11 (value at column 15) and, if given, accountFilterType on line 12 (column 24).
fn accounts(list: &str, filter: Option<&str>) -> String {
    let text = match filter {
        Some(f) => insert_key(VALID, TARGETS, &format!("accountFilterType: {f}")),
        None => VALID.to_string(),
    };
    insert_key(&text, TARGETS, &format!("accounts: [{list}]"))
}

#[test]
fn accounts_shape_and_duplicates() {
    let field = "spec.deploymentTargets.accounts";
    one(
        &accounts("\"12\"", Some("INTERSECTION")),
        11,
        16,
        &format!("{field}[0]"),
        "exactly 12 digits",
    );
    let twice = "\"000000000001\", \"000000000001\"";
    one(
        &accounts(twice, Some("DIFFERENCE")),
        11,
        32,
        &format!("{field}[1]"),
        "listed twice",
    );
    one(
        &accounts("000000000001", Some("DIFFERENCE")),
        11,
        16,
        &format!("{field}[0]"),
        "must be quoted",
    );
    ok(&accounts("\"000000000001\"", Some("DIFFERENCE")));
}

/// CloudFormation never deploys to the management account: an INTERSECTION naming it is refused, a DIFFERENCE
/// (the accounts left out) may name it.
#[test]
fn the_management_account_is_never_an_intersection_account() {
    let management = "\"123456789012\"";
    one(
        &accounts(management, Some("INTERSECTION")),
        11,
        16,
        "spec.deploymentTargets.accounts[0]",
        "is the management account",
    );
    ok(&accounts(management, Some("DIFFERENCE")));
}

#[test]
fn account_filter_type_rules() {
    let filter = "spec.deploymentTargets.accountFilterType";
    one(
        &accounts("\"000000000001\"", Some("UNION")),
        12,
        24,
        filter,
        "UNION is not supported",
    );
    let text = accounts("\"000000000001\"", None);
    one(
        &text,
        11,
        5,
        "spec.deploymentTargets.accounts",
        "need accountFilterType INTERSECTION",
    );
    let text = insert_key(VALID, TARGETS, "accountFilterType: INTERSECTION");
    one(&text, 11, 24, filter, "INTERSECTION needs `accounts`");
    ok(&insert_key(VALID, TARGETS, "accountFilterType: NONE"));
}

#[test]
fn regions() {
    let regions = |l: &str| with("regions: [us-west-2]", &format!("regions: [{l}]"));
    one(&regions(""), 12, 3, "spec.regions", "at least one Region");
    one(
        &regions("us-west-2, us-west-2"),
        12,
        24,
        "spec.regions[1]",
        "listed twice",
    );
    one(
        &regions("US-WEST-2"),
        12,
        13,
        "spec.regions[0]",
        "did you mean `us-west-2`?",
    );
    one(
        &regions("us-west2"),
        12,
        13,
        "spec.regions[0]",
        "did you mean `us-west-2`?",
    );
    one(
        &regions("mars-1"),
        12,
        13,
        "spec.regions[0]",
        "not a Region name",
    );
    ok(&regions(
        "us-west-2, eu-central-1, ap-southeast-3, us-gov-west-1, cn-north-1, il-central-1, me-south-1",
    ));
}

#[test]
fn failure_tolerance_and_concurrency_are_exclusive() {
    let text = insert_key(VALID, PREFS, "failureToleranceCount: 1");
    one(
        &text,
        17,
        5,
        "spec.operationPreferences.failureTolerancePercentage",
        "not both",
    );
    let text = insert_key(
        &insert_key(VALID, PREFS, "maxConcurrentPercentage: 10"),
        PREFS,
        "maxConcurrentCount: 1",
    );
    one(
        &text,
        17,
        5,
        "spec.operationPreferences.maxConcurrentPercentage",
        "not both",
    );
}

#[test]
fn preference_ranges() {
    let text = with(
        "failureTolerancePercentage: 100",
        "failureTolerancePercentage: 101",
    );
    one(
        &text,
        16,
        33,
        "spec.operationPreferences.failureTolerancePercentage",
        "0 to 100",
    );
    let text = insert_key(VALID, PREFS, "maxConcurrentPercentage: 0");
    one(
        &text,
        16,
        30,
        "spec.operationPreferences.maxConcurrentPercentage",
        "1 to 100",
    );
    let text = insert_key(VALID, PREFS, "maxConcurrentCount: 0");
    one(
        &text,
        16,
        25,
        "spec.operationPreferences.maxConcurrentCount",
        "at least 1",
    );
    ok(&with(
        "failureTolerancePercentage: 100",
        "failureTolerancePercentage: 0",
    ));
    ok(&insert_key(VALID, PREFS, "maxConcurrentPercentage: 100"));
}

#[test]
fn strict_failure_tolerance_caps_concurrency() {
    let five = with("failureTolerancePercentage: 100", "maxConcurrentCount: 5");
    one(
        &five,
        16,
        25,
        "spec.operationPreferences.maxConcurrentCount",
        "maxConcurrentCount 5 needs failureToleranceCount >= 4 under STRICT_FAILURE_TOLERANCE (or set \
         concurrencyMode: SOFT_FAILURE_TOLERANCE)",
    );
    let strict = insert_key(&five, PREFS, "concurrencyMode: STRICT_FAILURE_TOLERANCE");
    one(
        &strict,
        17,
        25,
        "spec.operationPreferences.maxConcurrentCount",
        "needs failureToleranceCount >= 4",
    );
    let three = insert_key(&five, PREFS, "failureToleranceCount: 3");
    one(
        &three,
        17,
        25,
        "spec.operationPreferences.maxConcurrentCount",
        "needs failureToleranceCount >= 4",
    );
    ok(&insert_key(&five, PREFS, "failureToleranceCount: 4"));
    ok(&insert_key(
        &five,
        PREFS,
        "concurrencyMode: SOFT_FAILURE_TOLERANCE",
    ));
}

#[test]
fn region_order() {
    let order = |l: &str| insert_key(VALID, PREFS, &format!("regionOrder: [{l}]"));
    let field = "spec.operationPreferences.regionOrder";
    one(
        &order("eu-west-1"),
        16,
        19,
        &format!("{field}[0]"),
        "not in spec.regions",
    );
    one(
        &order("us-west2"),
        16,
        19,
        &format!("{field}[0]"),
        "did you mean `us-west-2`?",
    );
    one(
        &order("us-west-2, us-west-2"),
        16,
        30,
        &format!("{field}[1]"),
        "listed twice",
    );
    ok(&order("us-west-2"));
}

#[test]
fn retain_stacks_needs_auto_deployment() {
    let text = with(
        "    enabled: true",
        "    enabled: false\n    retainStacksOnAccountRemoval: true",
    );
    one(
        &text,
        15,
        5,
        "spec.autoDeployment.retainStacksOnAccountRemoval",
        "needs enabled: true",
    );
    ok(&with("    enabled: true", "    enabled: false"));
}

#[test]
fn drift_interval_minimum() {
    one(
        &with("interval: 24h", "interval: 14m 59s"),
        20,
        15,
        "spec.driftDetection.interval",
        "minimum of 15m",
    );
    ok(&with("interval: 24h", "interval: 15m"));
}

#[test]
fn access_check_role_name() {
    let text = with(
        "roleName: AimablyMemberRole",
        "roleName: arn:aws:iam::1:role/x",
    );
    one(
        &text,
        22,
        15,
        "spec.accessCheck.roleName",
        "not an IAM role name",
    );
    one(
        &with(
            "roleName: AimablyMemberRole",
            &format!("roleName: {}", "r".repeat(65)),
        ),
        22,
        15,
        "spec.accessCheck.roleName",
        "1 to 64",
    );
    ok(&with("roleName: AimablyMemberRole", "roleName: a+=,.@-_1"));
}

/// `spec.rollout`: what can be known offline. VALID targets ROOT; the block goes after `accessCheck` (line 31).
#[test]
fn rollout_canary_bake_and_targeting() {
    let rollout = |body: &str| format!("{VALID}  rollout:\n{body}");
    ok(&rollout(
        "    canary:\n      accounts: [\"111111111111\"]\n      organizationalUnitIds: [ou-ab12-cdefgh34]\n    bake: 7d\n    promote: Manual\n",
    ));
    one(
        &rollout("    canary: {}\n"),
        24,
        13,
        "spec.rollout.canary",
        "the canary names no account",
    );
    one(
        &rollout("    canary:\n      accounts: [\"123456789012\"]\n"),
        25,
        18,
        "spec.rollout.canary.accounts[0]",
        "is the management account",
    );
    one(
        &rollout("    canary:\n      accounts: [\"1111\"]\n"),
        25,
        18,
        "spec.rollout.canary.accounts[0]",
        "12 digits",
    );
    one(
        &rollout("    canary:\n      organizationalUnitIds: [r-ab12]\n"),
        25,
        31,
        "spec.rollout.canary.organizationalUnitIds[0]",
        "the root would make every account a canary",
    );
    one(
        &rollout("    canary:\n      accounts: [\"111111111111\"]\n    bake: 8d\n"),
        26,
        11,
        "spec.rollout.bake",
        "over the maximum of 7 days",
    );
    one(
        &rollout("    canary:\n      accounts: [\"111111111111\"]\n    promote: Later\n"),
        26,
        14,
        "spec.rollout.promote",
        "Auto",
    );
    // An account list decides offline whether the canary is targeted.
    let listed = |filter: &str, accounts: &str| {
        with(
            "    organizationalUnitIds: [ROOT]\n",
            &format!(
                "    organizationalUnitIds: [ROOT]\n    accounts: [{accounts}]\n    accountFilterType: {filter}\n"
            ),
        ) + "  rollout:\n    canary:\n      accounts: [\"111111111111\"]\n"
    };
    ok(&listed("INTERSECTION", "\"111111111111\""));
    assert!(
        problems(&listed("INTERSECTION", "\"222222222222\""))[0]
            .message
            .contains("is not targeted")
    );
    assert!(
        problems(&listed("DIFFERENCE", "\"111111111111\""))[0]
            .message
            .contains("is excluded")
    );
}
