//! The rules of one document: every AWS constraint that can be checked offline, and stacksetd's own. Each message
//! names the rule and the fix, so the operator does not have to wait for AWS to refuse an operation.

use std::collections::HashMap;
use std::time::Duration;

use super::locate::{DocLayout, Finding};
use super::model::*;
use super::regions::{
    is_account_id, is_ou_id, is_region, is_role_name, is_root_id, suggest_region,
};

/// metadata.name is a Prometheus label value and a file name: DNS-label rules keep it both.
pub const MAX_NAME_CHARS: usize = 63;
/// AWS: stack set names.
pub const MAX_STACK_SET_NAME_CHARS: usize = 128;
/// AWS: stack set descriptions.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// CloudFormation: parameters per template, and logical-id length.
pub const MAX_PARAMETERS: usize = 200;
pub const MAX_PARAMETER_KEY_CHARS: usize = 255;
/// AWS: tags per stack set, and their key and value lengths.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_CHARS: usize = 128;
pub const MAX_TAG_VALUE_CHARS: usize = 256;
/// One Create/UpdateStackInstances call takes at most 50 OUs; stacksetd sends the targets in one call.
pub const MAX_ORGANIZATIONAL_UNITS: usize = 50;
/// Drift detection is a stack set operation: it holds the one operation slot while it runs, so it must not run
/// so often that it crowds out deployments.
pub const MIN_DRIFT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Collects findings for one document, placing each at its field.
struct Check<'a> {
    layout: &'a DocLayout,
    out: Vec<Finding>,
}

impl Check<'_> {
    /// A problem with a field as a whole (missing companion, conflict): at its key.
    fn key(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(Finding {
            pos: self.layout.pos_of(field),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// A problem with what was written: at the value.
    fn value(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(Finding {
            pos: self.layout.value_pos_of(field),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Report each repeated item of a list (at the repeat, naming the first).
    fn duplicates<'v>(&mut self, list: &str, items: impl Iterator<Item = &'v str>, fix: &str) {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.enumerate() {
            if let Some(j) = first.get(item) {
                self.value(
                    &format!("{list}[{i}]"),
                    format!("`{item}` is listed twice (first at {list}[{j}]); {fix}"),
                );
            } else {
                first.insert(item, i);
            }
        }
    }
}

/// All findings of one document.
pub fn check(d: &Deployment, layout: &DocLayout) -> Vec<Finding> {
    let mut c = Check {
        layout,
        out: Vec::new(),
    };
    header(&mut c, d);
    let s = &d.spec;
    identity(&mut c, s);
    template(&mut c, &s.template);
    parameters_and_tags(&mut c, s);
    targets(&mut c, &s.deployment_targets, &s.management_account_id);
    regions(&mut c, s);
    preferences(&mut c, &s.operation_preferences);
    if s.auto_deployment.retain_stacks_on_account_removal && !s.auto_deployment.enabled {
        c.key(
            "spec.autoDeployment.retainStacksOnAccountRemoval",
            "retainStacksOnAccountRemoval: true needs enabled: true (AWS only retains stacks when automatic \
             deployment removes them); set enabled: true or drop retainStacksOnAccountRemoval",
        );
    }
    super::depends_on::check_one(d, |field, message| c.value(field, message));
    super::credentials::check(s, |field, message| c.value(field, message));
    super::management_account::check(s, |field, message| c.value(field, message));
    super::rollout::check(s, |field, message| c.value(field, message));
    if let Some(drift) = &s.drift_detection {
        if drift.interval.0 < MIN_DRIFT_INTERVAL {
            c.value(
                "spec.driftDetection.interval",
                format!(
                    "interval {} is below the minimum of 15m: drift detection holds the stack set's one \
                     operation slot while it runs; write 15m or more (e.g. 24h)",
                    humantime::format_duration(drift.interval.0)
                ),
            );
        }
    }
    if let Some(access) = &s.access_check {
        if !is_role_name(&access.role_name) {
            c.value(
                "spec.accessCheck.roleName",
                "not an IAM role name: 1 to 64 of letters, digits and _+=,.@- (the name only, not an ARN or path)",
            );
        }
    }
    c.out
}

fn header(c: &mut Check, d: &Deployment) {
    if d.api_version != API_VERSION {
        c.value(
            "apiVersion",
            format!(
                "unsupported apiVersion `{}`; write `apiVersion: {API_VERSION}`",
                d.api_version
            ),
        );
    }
    if d.kind != KIND {
        c.value(
            "kind",
            format!("unsupported kind `{}`; write `kind: {KIND}`", d.kind),
        );
    }
    let name = &d.metadata.name;
    let shape_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !shape_ok || name.len() > MAX_NAME_CHARS {
        c.value(
            "metadata.name",
            format!(
                "`{name}` is not a valid name: 1 to {MAX_NAME_CHARS} lowercase letters, digits and hyphens, \
                 starting and ending with a letter or digit (it is a metric label and a file name), e.g. `{}`",
                slug(name)
            ),
        );
    }
}

/// A name in metadata.name's shape derived from `s`, for the fix in a message.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(MAX_NAME_CHARS).collect();
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "my-deployment".to_string()
    } else {
        out
    }
}

fn identity(c: &mut Check, s: &Spec) {
    let name = &s.stack_set_name;
    let starts_with_letter = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
    let chars_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !starts_with_letter || !chars_ok || name.len() > MAX_STACK_SET_NAME_CHARS {
        c.value(
            "spec.stackSetName",
            format!(
                "`{name}` is not a stack set name: AWS allows 1 to {MAX_STACK_SET_NAME_CHARS} letters, digits \
                 and hyphens, starting with a letter"
            ),
        );
    }
    if let Some(description) = &s.description {
        let n = description.chars().count();
        if n == 0 || n > MAX_DESCRIPTION_CHARS {
            c.value(
                "spec.description",
                format!(
                    "the description has {n} characters; AWS allows 1 to {MAX_DESCRIPTION_CHARS}: shorten it, or \
                     remove the field"
                ),
            );
        }
    }
    let numeric = c
        .layout
        .spot("spec.managementAccountId")
        .is_some_and(|s| s.numeric);
    if !is_account_id(&s.management_account_id) && !numeric {
        c.value(
            "spec.managementAccountId",
            format!(
                "`{}` is not an account id: write exactly 12 digits, quoted (e.g. \"012345678901\")",
                s.management_account_id
            ),
        );
    }
}

fn template(c: &mut Check, t: &TemplateSpec) {
    if t.policy.is_none() && t.url.is_none() {
        c.key(
            "spec.template",
            "the template needs `policy` (DataOnly or DataAndScheduling, the vendor catalog) or `url`",
        );
    }
    if let Some(url) = &t.url {
        if let Err(why) = check_url(url) {
            c.value("spec.template.url", why);
        }
    }
    if let Some(bucket) = &t.staging_bucket
        && let Err(why) = check_bucket_name(bucket)
    {
        c.value("spec.template.stagingBucket", why);
    }
    if let Some(sha) = &t.sha256 {
        let ok = sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            c.value(
                "spec.template.sha256",
                "sha256 must be exactly 64 lowercase hex characters (the output of `sha256sum`)",
            );
        }
    }
}

/// S3's bucket naming rules (general purpose buckets): 3-63 characters, lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit, not an IP address.
fn check_bucket_name(name: &str) -> Result<(), String> {
    let fix = "an S3 bucket name: 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter \
               or digit (the bucket only, no s3:// and no key)";
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let ip = name.parse::<std::net::Ipv4Addr>().is_ok();
    if !(3..=63).contains(&name.len()) || !chars_ok || !ends_ok || ip || name.contains("..") {
        return Err(format!("`{name}` is not {fix}"));
    }
    Ok(())
}

/// Template URLs: https anywhere; http only to this machine (a local mirror; nothing on the network can alter
/// it); file:// with an absolute path.
fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| {
        format!("`{text}` is not a URL ({e}); write https://..., http://127.0.0.1/... or file:///absolute/path")
    })?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err("plain http is only allowed to loopback (127.0.0.1, ::1, localhost), where nothing on the \
                     network can alter the template; use https://"
                    .to_string())
            }
        }
        "file" if text.starts_with("file:///") => Ok(()),
        "file" => {
            Err("a file URL needs an absolute path: file:///path/to/template.json".to_string())
        }
        other => Err(format!(
            "URL scheme `{other}` is not supported; write https://..., http:// to loopback, or file:///absolute/path"
        )),
    }
}

fn parameters_and_tags(c: &mut Check, s: &Spec) {
    if s.parameters.len() > MAX_PARAMETERS {
        c.key(
            "spec.parameters",
            format!(
                "{} parameters; CloudFormation allows at most {MAX_PARAMETERS}",
                s.parameters.len()
            ),
        );
    }
    for key in s.parameters.keys() {
        let n = key.chars().count();
        if n == 0
            || n > MAX_PARAMETER_KEY_CHARS
            || !key.chars().all(|ch| ch.is_ascii_alphanumeric())
        {
            c.key(
                &format!("spec.parameters.{key}"),
                format!(
                    "parameter name `{key}` is not a template parameter name: 1 to {MAX_PARAMETER_KEY_CHARS} \
                     letters and digits (CloudFormation logical id)"
                ),
            );
        }
    }
    let caps = s.capabilities.iter().map(|c| c.as_str());
    c.duplicates("spec.capabilities", caps, "remove the repeat");
    for (i, cap) in s.capabilities.iter().enumerate() {
        if *cap == Capability::CapabilityAutoExpand {
            c.value(
                &format!("spec.capabilities[{i}]"),
                "CAPABILITY_AUTO_EXPAND is not allowed: service-managed stack sets do not support macros; remove \
                 it (and expand macros in the template)",
            );
        }
    }
    // stacksetd adds two tags of its own (the owner and the approval record).
    const OWN_TAGS: usize = 2;
    if s.tags.len() > MAX_TAGS - OWN_TAGS {
        c.key(
            "spec.tags",
            format!(
                "{} tags; AWS allows at most {MAX_TAGS} per stack set and stacksetd adds {OWN_TAGS} of its own, so \
                 at most {} may be given here",
                s.tags.len(),
                MAX_TAGS - OWN_TAGS
            ),
        );
    }
    for (key, value) in &s.tags {
        let field = format!("spec.tags.{key}");
        let n = key.chars().count();
        if n == 0 || n > MAX_TAG_KEY_CHARS {
            c.key(
                &field,
                format!("tag keys must be 1 to {MAX_TAG_KEY_CHARS} characters; this one has {n}"),
            );
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            c.key(
                &field,
                "tag keys starting with `aws:` are reserved for AWS; rename the tag",
            );
        }
        if key.to_ascii_lowercase().starts_with("stacksetd.dev/") {
            c.key(
                &field,
                "tag keys starting with `stacksetd.dev/` are stacksetd's own (the owner and the approved template); \
                 rename the tag",
            );
        }
        let v = value.chars().count();
        if v > MAX_TAG_VALUE_CHARS {
            c.value(
                &field,
                format!(
                    "tag values may have at most {MAX_TAG_VALUE_CHARS} characters; this one has {v}"
                ),
            );
        }
    }
}

fn targets(c: &mut Check, t: &DeploymentTargets, management_account_id: &str) {
    const OUS: &str = "spec.deploymentTargets.organizationalUnitIds";
    const ACCOUNTS: &str = "spec.deploymentTargets.accounts";
    const FILTER: &str = "spec.deploymentTargets.accountFilterType";
    if t.organizational_unit_ids.is_empty() {
        c.key(OUS, "list at least one target: ROOT (the whole organization) or OU ids like ou-ab12-cdef5678");
    }
    if t.organizational_unit_ids.len() > MAX_ORGANIZATIONAL_UNITS {
        c.key(
            OUS,
            format!(
                "{} OUs; one AWS call takes at most {MAX_ORGANIZATIONAL_UNITS}: target a common parent OU instead",
                t.organizational_unit_ids.len()
            ),
        );
    }
    for (i, ou) in t.organizational_unit_ids.iter().enumerate() {
        if ou != ROOT && !is_root_id(ou) && !is_ou_id(ou) {
            let hint = if ou.eq_ignore_ascii_case(ROOT) {
                "; write ROOT in capitals"
            } else {
                ""
            };
            c.value(
                &format!("{OUS}[{i}]"),
                format!(
                    "`{ou}` is not a target: write ROOT, a root id (r-xxxx) or an OU id (ou-xxxx-yyyyyyyy){hint}"
                ),
            );
        }
    }
    c.duplicates(
        OUS,
        t.organizational_unit_ids.iter().map(String::as_str),
        "remove the repeat",
    );
    for (i, account) in t.accounts.iter().enumerate() {
        let field = format!("{ACCOUNTS}[{i}]");
        let numeric = c.layout.spot(&field).is_some_and(|s| s.numeric);
        if !is_account_id(account) && !numeric {
            c.value(
                &field,
                format!("`{account}` is not an account id: write exactly 12 digits, quoted"),
            );
        }
        // CloudFormation never deploys a service-managed instance to the management account: asking for one
        // is a mistake in the file, not something to send.
        if account == management_account_id
            && t.account_filter_type == AccountFilterType::Intersection
        {
            c.value(
                &field,
                format!(
                    "`{account}` is the management account (spec.managementAccountId); service-managed stack sets \
                     never deploy there: remove it"
                ),
            );
        }
    }
    c.duplicates(
        ACCOUNTS,
        t.accounts.iter().map(String::as_str),
        "remove the repeat",
    );
    match t.account_filter_type {
        AccountFilterType::Union => c.value(
            FILTER,
            "UNION is not supported by CreateStackInstances; use INTERSECTION (only these accounts of the OUs) or \
             DIFFERENCE (the OUs except these accounts)",
        ),
        AccountFilterType::None if !t.accounts.is_empty() => c.key(
            ACCOUNTS,
            "accounts need accountFilterType INTERSECTION (only these accounts of the OUs) or DIFFERENCE (the OUs \
             except these accounts); with NONE they are ignored",
        ),
        AccountFilterType::Intersection | AccountFilterType::Difference if t.accounts.is_empty() => c.value(
            FILTER,
            format!(
                "accountFilterType {} needs `accounts`; list them or set accountFilterType: NONE",
                t.account_filter_type.as_str()
            ),
        ),
        _ => {}
    }
}

/// A finding for a malformed Region name, with the likely intended one.
fn region_message(region: &str) -> String {
    let mut m =
        format!("`{region}` is not a Region name (like us-west-2, eu-central-1, us-gov-west-1)");
    if let Some(fix) = suggest_region(region) {
        m.push_str(&format!("; did you mean `{fix}`?"));
    }
    m
}

fn regions(c: &mut Check, s: &Spec) {
    if s.regions.is_empty() {
        c.key(
            "spec.regions",
            "list at least one Region, e.g. regions: [us-east-1]",
        );
    }
    for (i, region) in s.regions.iter().enumerate() {
        if !is_region(region) {
            c.value(&format!("spec.regions[{i}]"), region_message(region));
        }
    }
    c.duplicates(
        "spec.regions",
        s.regions.iter().map(String::as_str),
        "remove the repeat",
    );
    const ORDER: &str = "spec.operationPreferences.regionOrder";
    let order = &s.operation_preferences.region_order;
    for (i, region) in order.iter().enumerate() {
        let field = format!("{ORDER}[{i}]");
        if !is_region(region) {
            c.value(&field, region_message(region));
        } else if !s.regions.contains(region) {
            c.value(
                &field,
                format!("`{region}` is in regionOrder but not in spec.regions; add it to regions or remove it here"),
            );
        }
    }
    c.duplicates(ORDER, order.iter().map(String::as_str), "remove the repeat");
}

fn preferences(c: &mut Check, p: &OperationPreferences) {
    const P: &str = "spec.operationPreferences";
    let f = |name: &str| format!("{P}.{name}");
    if p.failure_tolerance_count.is_some() && p.failure_tolerance_percentage.is_some() {
        c.key(
            &f("failureTolerancePercentage"),
            "set failureToleranceCount or failureTolerancePercentage, not both; remove one",
        );
    }
    if p.max_concurrent_count.is_some() && p.max_concurrent_percentage.is_some() {
        c.key(
            &f("maxConcurrentPercentage"),
            "set maxConcurrentCount or maxConcurrentPercentage, not both; remove one",
        );
    }
    if p.failure_tolerance_percentage.is_some_and(|v| v > 100) {
        c.value(
            &f("failureTolerancePercentage"),
            "failureTolerancePercentage must be 0 to 100",
        );
    }
    if p.max_concurrent_percentage
        .is_some_and(|v| !(1..=100).contains(&v))
    {
        c.value(
            &f("maxConcurrentPercentage"),
            "maxConcurrentPercentage must be 1 to 100",
        );
    }
    if p.max_concurrent_count == Some(0) {
        c.value(
            &f("maxConcurrentCount"),
            "maxConcurrentCount must be at least 1",
        );
    }
    // Under STRICT_FAILURE_TOLERANCE (AWS's default) AWS caps concurrency at failure tolerance + 1; the operation
    // would be refused, or silently run slower than asked. Say so before AWS does.
    let strict = p.concurrency_mode != Some(ConcurrencyMode::SoftFailureTolerance);
    if let (true, Some(max)) = (strict, p.max_concurrent_count) {
        let tolerance = p.failure_tolerance_count.unwrap_or(0);
        if u64::from(max) > u64::from(tolerance) + 1 {
            c.value(
                &f("maxConcurrentCount"),
                format!(
                    "maxConcurrentCount {max} needs failureToleranceCount >= {} under STRICT_FAILURE_TOLERANCE \
                     (or set concurrencyMode: SOFT_FAILURE_TOLERANCE)",
                    max - 1
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
