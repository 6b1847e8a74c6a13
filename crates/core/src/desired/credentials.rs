//! The offline rules of `spec.credentials` (the role a deployment's calls run as): the shapes STS accepts, so a
//! typo is a FILE:LINE finding at `validate` time instead of an AssumeRole failure at 3 a.m.

use super::model::{CallAs, Spec};
use super::regions::is_account_id;

/// STS's bounds for DurationSeconds (the role's own MaxSessionDuration may be lower: AssumeRole says so).
pub const MIN_DURATION_SECONDS: u32 = 900;
pub const MAX_DURATION_SECONDS: u32 = 43_200;
/// The session length when `durationSeconds` is not given.
pub const DEFAULT_DURATION_SECONDS: u32 = 3_600;

/// Every finding on `spec.credentials`, as (field, message).
pub fn check(spec: &Spec, mut report: impl FnMut(&str, String)) {
    let Some(credentials) = &spec.credentials else {
        return;
    };
    match role_account(&credentials.role_arn) {
        None => report(
            "spec.credentials.roleArn",
            format!(
                "`{}` is not an IAM role ARN: write arn:aws:iam::<12-digit account>:role/<name> (a path may come \
                 before the name)",
                credentials.role_arn
            ),
        ),
        Some(account)
            if spec.call_as == CallAs::SelfAccount && account != spec.management_account_id =>
        {
            report(
                "spec.credentials.roleArn",
                format!(
                    "the role is in account {account}, but with callAs SELF every call must come from the \
                     management account {}: name a role in that account, or set callAs: DELEGATED_ADMIN if {account} \
                     is a delegated administrator",
                    spec.management_account_id
                ),
            )
        }
        Some(_) => {}
    }
    if let Some(id) = &credentials.external_id
        && !sts_string(id, 2, 1224, "+=,.@:/-")
    {
        report(
            "spec.credentials.externalId",
            "not an external id STS accepts: 2 to 1,224 of letters, digits and +=,.@:/-".into(),
        );
    }
    if let Some(name) = &credentials.session_name
        && !sts_string(name, 2, 64, "+=,.@-")
    {
        report(
            "spec.credentials.sessionName",
            format!("`{name}` is not a role session name: 2 to 64 of letters, digits and _+=,.@-"),
        );
    }
    if let Some(seconds) = credentials.duration_seconds
        && !(MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(&seconds)
    {
        report(
            "spec.credentials.durationSeconds",
            format!(
                "{seconds} is outside what STS allows: write {MIN_DURATION_SECONDS} to {MAX_DURATION_SECONDS} \
                 (seconds; default {DEFAULT_DURATION_SECONDS})"
            ),
        );
    }
}

/// The account of an IAM role ARN, or None when `arn` is not one.
pub fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let partition_ok = partition.starts_with("aws")
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-');
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    let name_ok = super::regions::is_role_name(name)
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b));
    (partition_ok && is_account_id(account) && name_ok).then_some(account)
}

/// The session name stacksetd uses when the file gives none: names the deployment in CloudTrail.
pub fn default_session_name(deployment: &str) -> String {
    let mut name = format!("stacksetd-{deployment}");
    name.truncate(64);
    name
}

fn sts_string(s: &str, min: usize, max: usize, extra: &str) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.as_bytes().contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert_eq!(
            role_account("arn:aws:iam::111111111111:role/Stacksetd"),
            Some("111111111111")
        );
        assert_eq!(
            role_account("arn:aws-us-gov:iam::111111111111:role/ops/team/Stacksetd"),
            Some("111111111111")
        );
        for bad in [
            "",
            "Stacksetd",
            "arn:aws:iam::111111111111:user/Stacksetd",
            "arn:aws:iam::11111111111:role/Stacksetd",
            "arn:aws:iam:us-east-1:111111111111:role/Stacksetd",
            "arn:aws:sts::111111111111:role/Stacksetd",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:iam::111111111111:role/a b",
            "arn:AWS:iam::111111111111:role/x",
        ] {
            assert_eq!(role_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_names_fit_sts() {
        assert!(sts_string(&default_session_name("a"), 2, 64, "+=,.@-"));
        let long = default_session_name(&"x".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(!sts_string("a", 2, 64, "+=,.@-"));
        assert!(!sts_string("a b", 2, 64, "+=,.@-"));
    }
}
