//! Where template versions come from: a fetcher (https, http only to loopback, file://) that asks conditionally,
//! and `TemplateSource`, which keeps the last version fetched per URL.
//!
//! Why conditional: the vendor republishes behind an unchanged URL, so stacksetd must look often, and an
//! unchanged template must cost one request answered 304 and nothing else (no body, no parse). A server without
//! validators is still cheap: identical bytes are recognised by their digest and not re-parsed.
//!
//! Why a cache: passes plan against the last version the poller (or the first pass) fetched; a pass never fetches
//! on its own once a version is known, and a failed fetch leaves the known version in place, so a 404 or a
//! timeout can never make a plan propose a template change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::Serialize;
use tracing::{info, warn};

use super::{
    FETCH_TIMEOUT, MAX_REDIRECTS, MAX_TEMPLATE_BYTES, Template, check_redirect_with,
    check_remote_url, check_size, is_internal_ip, is_loopback_url, is_private_ip, sha256_hex,
    template_error,
};
use crate::error::Error;

/// The HTTP validators of the version held: sent back as If-None-Match / If-Modified-Since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The answer to a conditional fetch.
#[derive(Debug)]
pub enum Fetched {
    /// 304, or the same bytes again: nothing was parsed.
    NotModified,
    New {
        template: Template,
        validators: Validators,
    },
}

/// Fetches templates; one HTTP client reused for every fetch.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Fetcher {
    pub fn new() -> Fetcher {
        Fetcher::with_timeout(FETCH_TIMEOUT)
    }

    /// A fetcher whose whole request (connect, headers, body) gives up after `timeout`; https goes through the
    /// environment's proxy (HTTPS_PROXY or ALL_PROXY, minus NO_PROXY), loopback never does.
    pub fn with_timeout(timeout: Duration) -> Fetcher {
        Fetcher::with_proxy(timeout, env_https_proxy())
    }

    /// As [`Fetcher::with_timeout`]; `private_networks` lets names resolve, and redirects lead, into private
    /// networks (`template_private_networks`: templates come from a mirror there).
    pub fn with_networks(timeout: Duration, private_networks: bool) -> Fetcher {
        Fetcher::build(timeout, env_https_proxy(), private_networks)
    }

    /// As [`Fetcher::with_timeout`], with the https proxy given (tests; `None`: direct).
    pub fn with_proxy(timeout: Duration, https_proxy: Option<url::Url>) -> Fetcher {
        Fetcher::build(timeout, https_proxy, false)
    }

    fn build(timeout: Duration, https_proxy: Option<url::Url>, private_networks: bool) -> Fetcher {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            // `previous` holds every URL requested so far, the configured one first.
            let Some(original) = attempt.previous().first().cloned() else {
                return attempt.error("a redirect without a request");
            };
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if let Err(reason) =
                check_redirect_with(&original, attempt.url(), private_networks)
            {
                attempt.error(reason)
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(policy)
            .dns_resolver(Arc::new(PublicAddresses { private_networks }))
            .no_proxy()
            .user_agent(concat!("stacksetd/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = https_proxy {
            let no_proxy = reqwest::NoProxy::from_env();
            builder = builder.proxy(
                reqwest::Proxy::custom(move |url| {
                    (url.scheme() == "https" && !is_loopback_url(url)).then(|| proxy.clone())
                })
                .no_proxy(no_proxy),
            );
        }
        let http = builder
            .build()
            .expect("a reqwest client with static settings always builds");
        Fetcher { http }
    }

    /// Fetch and parse the template at `url` unconditionally.
    pub async fn fetch(&self, url: &str) -> Result<Template, Error> {
        match self.fetch_if_changed(url, None, None).await? {
            Fetched::New { template, .. } => Ok(template),
            Fetched::NotModified => Err(template_error(
                url,
                "the server answered 304 Not Modified to an unconditional request".into(),
                "template_http_status",
            )),
        }
    }

    /// Fetch `url` unless the version held (its validators, its digest) is still current.
    pub async fn fetch_if_changed(
        &self,
        url: &str,
        validators: Option<&Validators>,
        held_sha256: Option<&str>,
    ) -> Result<Fetched, Error> {
        let parsed = url::Url::parse(url)
            .map_err(|e| template_error(url, format!("not a URL: {e}"), "template_url"))?;
        let (bytes, new_validators) = if parsed.scheme() == "file" {
            let path = parsed
                .to_file_path()
                .map_err(|_| template_error(url, "not a local file path".into(), "template_url"))?;
            (read_file(url, &path).await?, Validators::default())
        } else {
            check_remote_url(&parsed)
                .map_err(|reason| template_error(url, reason, "template_url"))?;
            match self.fetch_http(url, validators).await? {
                None => return Ok(Fetched::NotModified),
                Some(answer) => answer,
            }
        };
        let sha256 = sha256_hex(&bytes);
        if held_sha256 == Some(sha256.as_str()) {
            return Ok(Fetched::NotModified);
        }
        let body = String::from_utf8(bytes).map_err(|_| {
            template_error(
                url,
                "the template is not UTF-8 text".into(),
                "template_unparsable",
            )
        })?;
        Ok(Fetched::New {
            template: Template::from_body(url, body)?,
            validators: new_validators,
        })
    }

    /// `None`: 304 Not Modified.
    async fn fetch_http(
        &self,
        url: &str,
        validators: Option<&Validators>,
    ) -> Result<Option<(Vec<u8>, Validators)>, Error> {
        let transport_error = |e: reqwest::Error| {
            let label = if e.is_timeout() {
                "template_timeout"
            } else {
                "template_fetch"
            };
            template_error(url, crate::error::chain(&e), label)
        };
        let mut request = self.http.get(url);
        let conditional = validators.is_some_and(|v| !v.is_empty());
        // One validator: the ETag when there is one. A server that evaluates both (moto's S3 does) answers 304
        // to a republication within the same second, its date unchanged, even though the ETag changed.
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                request = request.header(IF_NONE_MATCH, etag);
            } else if let Some(date) = &v.last_modified {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && conditional {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(template_error(
                url,
                format!("HTTP {status}"),
                "template_http_status",
            ));
        }
        if let Some(length) = response.content_length() {
            check_size(url, usize::try_from(length).unwrap_or(usize::MAX))?;
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(String::from)
        };
        let new_validators = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            bytes.extend_from_slice(&chunk);
            check_size(url, bytes.len())?;
        }
        Ok(Some((bytes, new_validators)))
    }
}

/// A `file://` template: a regular file (a symlink to one is followed, as Kubernetes mounts ConfigMaps), read
/// no further than the size limit, so a device, a FIFO or a directory can neither hang nor exhaust the daemon.
async fn read_file(url: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    use tokio::io::AsyncReadExt;
    let cannot = |e: std::io::Error| {
        template_error(
            url,
            format!("cannot read {}: {e}", path.display()),
            "template_fetch",
        )
    };
    let metadata = tokio::fs::metadata(path).await.map_err(cannot)?;
    if !metadata.is_file() {
        return Err(template_error(
            url,
            format!("{} is not a regular file", path.display()),
            "template_url",
        ));
    }
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(cannot)?;
    check_size(url, bytes.len())?;
    Ok(bytes)
}

/// The https proxy the environment names (HTTPS_PROXY, then ALL_PROXY, either case), if it is a URL.
fn env_https_proxy() -> Option<url::Url> {
    let text = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))?;
    match url::Url::parse(&text) {
        Ok(url) => Some(url),
        Err(e) => {
            warn!(error = %e, "the https proxy in the environment is not a URL: fetching templates directly");
            None
        }
    }
}

/// Name resolution for template fetches: a name other than `localhost` that resolves only to loopback,
/// link-local or unspecified addresses is refused (a public-looking host pointed at the instance metadata
/// service or this machine), and so are private-network addresses unless `private_networks`; such addresses
/// are dropped from a mixed answer.
struct PublicAddresses {
    private_networks: bool,
}

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let private_networks = self.private_networks;
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<std::net::SocketAddr> = if host.eq_ignore_ascii_case("localhost") {
                found
            } else {
                found
                    .into_iter()
                    .filter(|a| !is_internal_ip(a.ip()))
                    .filter(|a| private_networks || !is_private_ip(a.ip()))
                    .collect()
            };
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (loopback and link-local are refused, and private \
                     networks unless template_private_networks is true)"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What the last fetches of a URL found, for /status and `plan`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceState {
    /// `ok`, `not_modified`, or the error's label.
    pub last_result: Option<crate::error::Label>,
    pub last_checked_at: Option<String>,
    /// When a new version was last fetched.
    pub last_changed_at: Option<String>,
    /// The last failure, kept until a fetch succeeds (the version held stays in use meanwhile).
    pub last_error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The answer of a poll.
#[derive(Debug)]
pub enum Poll {
    Unchanged,
    /// A new version is held now; the deployments using the URL need a pass.
    Changed {
        previous: Option<String>,
        sha256: String,
    },
    /// The version held (if any) stays.
    Failed(Error),
}

/// Called with (deployment, result) for every fetch: `stacksetd_template_fetches_total`.
pub type FetchObserver = Arc<dyn Fn(&str, &'static str) + Send + Sync>;

#[derive(Default)]
struct Entry {
    current: Option<Arc<Template>>,
    validators: Validators,
}

/// The last version fetched per URL, shared by every deployment and pass (and the poller).
pub struct TemplateSource {
    fetcher: Fetcher,
    /// One lock per URL, held across its fetch: a pass asking for a URL being polled waits for that answer
    /// instead of fetching a second time.
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    states: Mutex<HashMap<String, SourceState>>,
    observer: OnceLock<FetchObserver>,
}

impl TemplateSource {
    pub fn new(fetcher: Fetcher) -> TemplateSource {
        TemplateSource {
            fetcher,
            entries: Mutex::default(),
            states: Mutex::default(),
            observer: OnceLock::new(),
        }
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Report every fetch to `observer` (the daemon's metrics). Set once; later calls are ignored.
    pub fn set_observer(&self, observer: FetchObserver) {
        let _ = self.observer.set(observer);
    }

    fn entry(&self, url: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        self.entries
            .lock()
            .expect("template entries lock poisoned")
            .entry(url.to_string())
            .or_default()
            .clone()
    }

    /// The version a pass plans with: the one held, or (the first time, or after failures only) a fetch now.
    pub async fn latest(&self, url: &str, deployment: &str) -> Result<Arc<Template>, Error> {
        let entry = self.entry(url);
        let mut entry = entry.lock().await;
        if let Some(template) = &entry.current {
            return Ok(template.clone());
        }
        match self.fetch_into(url, &mut entry, &[deployment]).await {
            Poll::Failed(e) => Err(e),
            Poll::Changed { .. } | Poll::Unchanged => Ok(entry
                .current
                .clone()
                .expect("a successful first fetch holds a version")),
        }
    }

    /// The version held, without fetching.
    pub async fn held(&self, url: &str) -> Option<Arc<Template>> {
        self.entry(url).lock().await.current.clone()
    }

    /// Ask the server now (conditionally when a version is held).
    pub async fn poll(&self, url: &str, deployments: &[&str]) -> Poll {
        let entry = self.entry(url);
        let mut entry = entry.lock().await;
        self.fetch_into(url, &mut entry, deployments).await
    }

    pub fn state(&self, url: &str) -> Option<SourceState> {
        self.states
            .lock()
            .expect("template states lock poisoned")
            .get(url)
            .cloned()
    }

    async fn fetch_into(&self, url: &str, entry: &mut Entry, deployments: &[&str]) -> Poll {
        let held = entry.current.as_ref().map(|t| t.sha256.clone());
        let validators = entry.current.as_ref().map(|_| entry.validators.clone());
        let result = self
            .fetcher
            .fetch_if_changed(url, validators.as_ref(), held.as_deref())
            .await;
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let (label, poll) = match result {
            Ok(Fetched::NotModified) => ("not_modified", Poll::Unchanged),
            Ok(Fetched::New {
                template,
                validators,
            }) => {
                let sha256 = template.sha256.clone();
                info!(%url, sha256 = %sha256, previous = ?held, "template version fetched");
                entry.current = Some(Arc::new(template));
                entry.validators = validators;
                (
                    "ok",
                    Poll::Changed {
                        previous: held,
                        sha256,
                    },
                )
            }
            Err(e) => {
                warn!(%url, error = %e, reason = e.metric_label(), held = ?held,
                    "template fetch failed; the version held stays in use");
                (e.metric_label(), Poll::Failed(e))
            }
        };
        {
            let mut states = self.states.lock().expect("template states lock poisoned");
            let state = states.entry(url.to_string()).or_default();
            state.last_result = Some(label.into());
            state.last_checked_at = Some(now.clone());
            match &poll {
                Poll::Failed(e) => state.last_error = Some(e.to_string()),
                Poll::Changed { .. } => {
                    state.last_error = None;
                    state.last_changed_at = Some(now);
                }
                Poll::Unchanged => state.last_error = None,
            }
            state.etag = entry.validators.etag.clone();
            state.last_modified = entry.validators.last_modified.clone();
        }
        if let Some(observer) = self.observer.get() {
            for deployment in deployments {
                observer(deployment, label);
            }
        }
        poll
    }
}
