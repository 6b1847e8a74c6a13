//! Where the SDK may send signed requests: https anywhere, plain http only to this machine (a local emulator).
//! Signed requests carry credentials-derived signatures and session tokens, so they never travel in clear.

use crate::error::Error;

/// `aws.endpoint_url`: signed requests carry credentials-derived signatures and session tokens, so they travel
/// in clear only to this machine (a local emulator).
pub fn check_endpoint(text: &str) -> Result<(), Error> {
    check_endpoint_named("aws.endpoint_url", text)
}

/// As [`check_endpoint`], for an endpoint given as `name` (a setting or an AWS_ENDPOINT_URL* variable).
pub fn check_endpoint_named(name: &str, text: &str) -> Result<(), Error> {
    let url = url::Url::parse(text)
        .map_err(|e| Error::Settings(format!("{name} `{text}` is not a URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if url.host().is_some_and(|h| is_loopback(&h)) => Ok(()),
        "http" => Err(Error::Settings(format!(
            "{name} `{text}`: plain http only to a loopback address (127.0.0.1, [::1], localhost); \
             use https for anything else, so credentials never travel in clear"
        ))),
        other => Err(Error::Settings(format!(
            "{name} `{text}`: scheme {other} is not supported; use https (or http to loopback)"
        ))),
    }
}

/// A URL host that is this machine.
pub fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}
