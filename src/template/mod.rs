//! Templates: where they come from (the vendor catalog or any URL), how they are fetched (https, http only to
//! loopback, file://), their identity (sha256 of the bytes) and semantic equality (parsed JSON/YAML, so that
//! reformatting alone never looks like a change). `source` fetches conditionally and keeps the last version per
//! URL; `policy` decides whether a new version may be applied.

use std::net::IpAddr;
use std::time::Duration;

use crate::desired::{PolicyLevel, TemplateSpec};
use crate::error::Error;

mod libyaml;
mod parse;
mod policy;
mod source;
mod yaml;

pub use parse::{MAX_TEMPLATE_YAML_NODES, parse_document};

pub use policy::{Assessment, Assessments, Baseline, BaselineState, Decision, HoldReason, decide};
pub use source::{Fetched, Fetcher, Poll, SourceState, TemplateSource, Validators};

/// Where the vendor publishes its two policy levels (its setup guide names this bucket).
pub const DEFAULT_CATALOG_BASE_URL: &str =
    "https://s3-us-west-2.amazonaws.com/com.cloudycosts.cloudformation/";
/// CloudFormation's limit for an inline TemplateBody.
pub const MAX_TEMPLATE_BODY_BYTES: usize = 51_200;
/// CloudFormation's limit for a template fetched from S3; nothing larger is ever read.
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;
/// A whole fetch (connect, headers, body) gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
pub const MAX_REDIRECTS: usize = 3;

/// The catalog file name of a policy level.
pub fn catalog_file(level: PolicyLevel) -> &'static str {
    match level {
        PolicyLevel::DataOnly => "AimablyStackSetTemplateDataOnly.json",
        PolicyLevel::DataAndScheduling => "AimablyStackSetTemplateDataAndScheduling.json",
    }
}

/// The URL a deployment's template comes from: its own `url`, or the catalog's URL for its policy level.
pub fn source_url(spec: &TemplateSpec, catalog_base: &str) -> Option<String> {
    if let Some(url) = &spec.url {
        return Some(url.clone());
    }
    let level = spec.policy?;
    let base = catalog_base.trim_end_matches('/');
    Some(format!("{base}/{}", catalog_file(level)))
}

/// A fetched, parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub url: String,
    pub body: String,
    /// Hex sha256 of the exact bytes: the version's identity.
    pub sha256: String,
    pub document: serde_json::Value,
}

impl Template {
    pub fn from_body(url: &str, body: String) -> Result<Template, Error> {
        let document = parse_document(&body)
            .map_err(|reason| template_error(url, reason, "template_unparsable"))?;
        if !document.is_object() {
            return Err(template_error(
                url,
                "a template must be a JSON or YAML mapping".into(),
                "template_unparsable",
            ));
        }
        Ok(Template {
            url: url.to_string(),
            sha256: sha256_hex(body.as_bytes()),
            body,
            document,
        })
    }

    /// The body to apply: sent as TemplateBody up to CloudFormation's 51,200-byte limit, staged and passed as a
    /// TemplateURL above it (`controller::stage_if_large`), refused above the 1 MB a TemplateURL may hold.
    pub fn body_for_api(&self) -> Result<&str, Error> {
        check_size(&self.url, self.body.len())?;
        Ok(&self.body)
    }

    /// Same template, ignoring formatting and JSON-vs-YAML.
    pub fn same_as(&self, other_body: &str) -> bool {
        parse_document(other_body).is_ok_and(|doc| doc == self.document)
    }

    pub fn short_digest(&self) -> &str {
        &self.sha256[..12]
    }
}

/// The staging key of a template: content-addressed, so a version is uploaded once and a key never names other
/// bytes (`stacksetd/<sha256>.json` or `.yaml`).
pub fn staging_key(body: &str) -> String {
    let ext = if body.trim_start().starts_with('{') {
        "json"
    } else {
        "yaml"
    };
    format!("stacksetd/{}.{ext}", sha256_hex(body.as_bytes()))
}

pub use crate::cloud::staged_url;
pub use crate::input::sha256_hex;

pub(crate) fn template_error(url: &str, reason: String, label: &'static str) -> Error {
    // A pre-signed URL's signature is in its query; userinfo is a password: neither goes into a message.
    Error::Template {
        url: crate::redact::urls_in(url),
        reason: crate::redact::urls_in(&reason),
        label,
    }
}

pub(crate) fn check_size(url: &str, size: usize) -> Result<(), Error> {
    if size > MAX_TEMPLATE_BYTES {
        return Err(template_error(
            url,
            format!(
                "the template is larger than {MAX_TEMPLATE_BYTES} bytes, CloudFormation's limit"
            ),
            "template_too_large",
        ));
    }
    Ok(())
}

/// https anywhere; plain http only to this machine (a test server or a local mirror).
pub fn check_remote_url(url: &url::Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_url(url) => Ok(()),
        "http" => Err("plain http is only allowed to a loopback address; use https".into()),
        other => Err(format!(
            "unsupported scheme `{other}`; use https://, http:// to loopback, or file://"
        )),
    }
}

pub(crate) fn is_loopback_url(url: &url::Url) -> bool {
    url.host()
        .is_some_and(|h| crate::cloud::endpoint::is_loopback(&h))
}

/// Loopback, link-local (the instance metadata service lives there), unspecified, or IPv4-mapped versions of
/// those: addresses a template from a public host must never be fetched from.
pub(crate) fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_ip(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Private networks (RFC 1918, shared address space 100.64/10, IPv6 unique-local and site-local, and their
/// IPv4-mapped forms): a vendor's public URL must not send stacksetd into the network it runs in (a redirect, a
/// name resolving there), unless `template_private_networks` says templates come from a mirror there. A
/// configured URL naming a private address by IP is the operator's explicit choice and is fetched.
pub(crate) fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfec0
        }
    }
}

/// A redirect from `original` (the configured URL) to `to`: https to https only, never to an internal address
/// named by IP or `localhost` (nor to a private one, unless `private_networks`, or the configured URL is itself
/// private); plain http only from a loopback URL to a loopback URL (a local test server).
pub fn check_redirect(original: &url::Url, to: &url::Url) -> Result<(), String> {
    check_redirect_with(original, to, false)
}

pub fn check_redirect_with(
    original: &url::Url,
    to: &url::Url,
    private_networks: bool,
) -> Result<(), String> {
    let ip_of = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let private = |u: &url::Url| ip_of(u).is_some_and(is_private_ip);
    if private(to) && !private_networks && !private(original) && !is_loopback_url(original) {
        return Err(format!(
            "redirect to {} refused: a public URL may not send stacksetd into a private network (set \
             template_private_networks: true for a mirror there)",
            to.host_str().unwrap_or("")
        ));
    }
    let internal = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => is_internal_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_internal_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => true,
    };
    let local_origin = original.scheme() == "http" && is_loopback_url(original);
    match to.scheme() {
        "https" if internal(to) && !is_loopback_url(original) => Err(format!(
            "redirect to {} refused: a public URL may not send stacksetd to an internal address",
            to.host_str().unwrap_or("")
        )),
        "https" => Ok(()),
        "http" if local_origin && is_loopback_url(to) => Ok(()),
        "http" => Err(
            "redirect to plain http refused: only https -> https (http only between loopback URLs)"
                .into(),
        ),
        other => Err(format!("redirect to scheme `{other}` refused: only https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_go_https_to_https_and_never_inward() {
        let u = |t: &str| url::Url::parse(t).unwrap();
        let public = u("https://vendor.example/t.json");
        for ok in [
            "https://cdn.vendor.example/t.json",
            "https://s3.amazonaws.com/b/t.json",
        ] {
            assert!(check_redirect(&public, &u(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://vendor.example/t.json",
            "http://127.0.0.1/t.json",
            "https://127.0.0.1/t.json",
            "https://localhost/t.json",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/t.json",
            "https://[::ffff:127.0.0.1]/t.json",
            "https://[fe80::1]/t.json",
            "https://0.0.0.0/t.json",
            "file:///etc/passwd",
            "ftp://vendor.example/t.json",
        ] {
            assert!(
                check_redirect(&public, &u(bad)).is_err(),
                "{bad} must be refused"
            );
        }
        // Private networks: not from a public URL (unless allowed), but within a private mirror.
        for private in [
            "https://10.0.0.5/t.json",
            "https://172.16.3.4/t.json",
            "https://192.168.1.10/t.json",
            "https://100.64.0.1/t.json",
            "https://[fd00::5]/t.json",
            "https://[::ffff:10.0.0.5]/t.json",
        ] {
            assert!(check_redirect(&public, &u(private)).is_err(), "{private}");
            assert!(
                check_redirect_with(&public, &u(private), true).is_ok(),
                "{private} allowed"
            );
        }
        assert!(
            check_redirect(&u("https://10.0.0.5/t.json"), &u("https://10.0.0.6/t.json")).is_ok()
        );
        assert!(
            check_redirect(&public, &u("https://172.32.0.1/t.json")).is_ok(),
            "not private"
        );
        // A loopback test server may redirect within loopback, over http too, and out to https.
        let local = u("http://127.0.0.1:8080/t.json");
        assert!(check_redirect(&local, &u("http://127.0.0.1:8080/v2.json")).is_ok());
        assert!(check_redirect(&local, &u("http://localhost:8080/v2.json")).is_ok());
        assert!(check_redirect(&local, &u("https://vendor.example/t.json")).is_ok());
        assert!(check_redirect(&local, &u("http://vendor.example/t.json")).is_err());
        let local_tls = u("https://127.0.0.1:8443/t.json");
        assert!(check_redirect(&local_tls, &u("https://127.0.0.1:8443/v2.json")).is_ok());
        assert!(
            check_redirect(&local_tls, &u("http://127.0.0.1:8443/v2.json")).is_err(),
            "never down to http"
        );
    }

    #[test]
    fn the_reference_states_the_redirect_limit_the_code_enforces() {
        let reference = include_str!("../../docs/reference.md");
        assert!(
            reference.contains(&format!("{MAX_REDIRECTS} redirects")),
            "docs/reference.md: {MAX_REDIRECTS} redirects"
        );
    }

    #[test]
    fn json_and_yaml_spellings_are_the_same_template() {
        let json = r#"{"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": {"Ref": "Name"},
            "Arn": {"Fn::GetAtt": ["Other", "Arn"]}, "Path": {"Fn::Sub": "/${AWS::Region}/"}}}}}"#;
        let yaml = "Resources:\n  Role:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: !Ref Name\n      \
                    Arn: !GetAtt Other.Arn\n      Path: !Sub '/${AWS::Region}/'\n";
        let template = Template::from_body("file:///t.json", json.to_string()).unwrap();
        assert!(template.same_as(yaml));
        assert!(!template.same_as(&yaml.replace("Other.Arn", "Other.Name")));
    }

    #[test]
    fn reformatting_is_not_a_change_but_content_is() {
        let a = Template::from_body("u", r#"{"A": [1, 2], "B": {"C": "x"}}"#.into()).unwrap();
        assert!(a.same_as("{\n  \"B\": {\"C\": \"x\"},\n  \"A\": [1,2]\n}"));
        assert!(!a.same_as(r#"{"A": [2, 1], "B": {"C": "x"}}"#));
        assert_ne!(
            a.sha256,
            sha256_hex(b"{\"B\": {\"C\": \"x\"}, \"A\": [1, 2]}")
        );
    }

    #[test]
    fn templates_must_be_mappings() {
        let err = Template::from_body("u", "[1, 2]".into()).unwrap_err();
        assert_eq!(err.metric_label(), "template_unparsable");
        let err = Template::from_body("u", "{unclosed".into()).unwrap_err();
        assert_eq!(err.metric_label(), "template_unparsable");
    }

    #[test]
    fn oversized_bodies_are_refused_for_the_api() {
        let large = format!(
            r#"{{"Description": "{}"}}"#,
            "x".repeat(MAX_TEMPLATE_BODY_BYTES)
        );
        let template = Template::from_body("u", large).unwrap();
        assert!(
            template.body_for_api().is_ok(),
            "staged above the inline limit"
        );
        let huge = format!(r#"{{"Description": "{}"}}"#, "x".repeat(MAX_TEMPLATE_BYTES));
        let template = Template::from_body("u", huge).unwrap();
        let err = template.body_for_api().unwrap_err();
        assert_eq!(err.metric_label(), "template_too_large");
    }

    #[test]
    fn catalog_urls_follow_the_policy_level() {
        let spec = |policy, url: Option<&str>| TemplateSpec {
            policy,
            url: url.map(String::from),
            sha256: None,
            updates: Default::default(),
            allow_permission_widening: false,
            staging_bucket: None,
            access_analyzer: false,
        };
        assert_eq!(
            source_url(
                &spec(Some(PolicyLevel::DataOnly), None),
                DEFAULT_CATALOG_BASE_URL
            )
            .unwrap(),
            "https://s3-us-west-2.amazonaws.com/com.cloudycosts.cloudformation/AimablyStackSetTemplateDataOnly.json"
        );
        assert_eq!(
            source_url(
                &spec(Some(PolicyLevel::DataAndScheduling), None),
                "http://127.0.0.1:9/mirror/"
            )
            .unwrap(),
            "http://127.0.0.1:9/mirror/AimablyStackSetTemplateDataAndScheduling.json"
        );
        assert_eq!(
            source_url(&spec(Some(PolicyLevel::DataOnly), Some("file:///x")), "b").unwrap(),
            "file:///x"
        );
        assert_eq!(source_url(&spec(None, None), "b"), None);
    }

    #[test]
    fn only_https_or_loopback_http_is_fetched() {
        let ok = |u: &str| check_remote_url(&url::Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://example.com/t.json"));
        assert!(ok("http://127.0.0.1:8080/t.json"));
        assert!(ok("http://127.3.4.5/t.json"));
        assert!(ok("http://[::1]:80/t.json"));
        assert!(ok("http://localhost/t.json"));
        assert!(!ok("http://example.com/t.json"));
        assert!(!ok("http://10.0.0.1/t.json"));
        assert!(!ok("ftp://example.com/t.json"));
    }

    #[tokio::test]
    async fn an_unchanged_file_is_not_modified_and_a_failed_poll_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"Resources": {}}"#).unwrap();
        let url = url::Url::from_file_path(&path).unwrap().to_string();
        let source = TemplateSource::new(Fetcher::new());
        let first = source.latest(&url, "d").await.unwrap();
        assert!(matches!(source.poll(&url, &["d"]).await, Poll::Unchanged));
        std::fs::write(&path, "{not a template").unwrap();
        assert!(matches!(source.poll(&url, &["d"]).await, Poll::Failed(_)));
        assert_eq!(
            source.latest(&url, "d").await.unwrap(),
            first,
            "the version held stays"
        );
        let state = source.state(&url).unwrap();
        assert_eq!(state.last_result.as_deref(), Some("template_unparsable"));
        std::fs::write(&path, r#"{"Resources": {"A": {}}}"#).unwrap();
        match source.poll(&url, &["d"]).await {
            Poll::Changed { previous, sha256 } => {
                assert_eq!(previous.as_deref(), Some(first.sha256.as_str()));
                assert_eq!(sha256, sha256_hex(br#"{"Resources": {"A": {}}}"#));
            }
            other => panic!("expected a change, got {other:?}"),
        }
        assert!(source.state(&url).unwrap().last_error.is_none());
    }

    #[tokio::test]
    async fn file_urls_are_read_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"Resources": {}}"#).unwrap();
        let url = url::Url::from_file_path(&path).unwrap().to_string();
        let template = Fetcher::new().fetch(&url).await.unwrap();
        assert_eq!(template.sha256, sha256_hex(br#"{"Resources": {}}"#));
        let missing = Fetcher::new()
            .fetch(&url.replace("t.json", "nope.json"))
            .await
            .unwrap_err();
        assert_eq!(missing.metric_label(), "template_fetch");
    }
}
