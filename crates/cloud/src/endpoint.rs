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
    match endpoint_problem(text) {
        Some(problem) => Err(Error::Settings(format!("{name} {problem}"))),
        None => Ok(()),
    }
}

/// What is wrong with an endpoint URL, starting with the URL itself (the caller puts the setting's name in
/// front); `None` when signed requests may go there.
pub fn endpoint_problem(text: &str) -> Option<String> {
    let url = match url::Url::parse(text) {
        Ok(url) => url,
        Err(e) => return Some(format!("`{text}` is not a URL: {e}")),
    };
    match url.scheme() {
        "https" => None,
        "http" if url.host().is_some_and(|h| is_loopback(&h)) => None,
        "http" => Some(format!(
            "`{text}`: plain http only to a loopback address (127.0.0.1, [::1], localhost); \
             use https for anything else, so credentials never travel in clear"
        )),
        other => Some(format!(
            "`{text}`: scheme {other} is not supported; use https (or http to loopback)"
        )),
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
