//! The daemon in process on `sim`, following a template URL served by a real local HTTP server with a 2 s poll
//! interval: a publication reaches UpdateStackSet within one poll (the latency is printed), unchanged polls are
//! 304s that cause nothing, and /status and /metrics show digests, fetch results, failures and refusals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon_support::{eventually, get, metric};
use crate::templates_support::*;
use stacksetd::daemon::{Daemon, Options};
use tokio::sync::oneshot;

const POLL: Duration = Duration::from_secs(2);
/// Bounds for things that take a poll interval plus milliseconds; the machine is shared.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_publications_on_its_poll_interval() {
    let server = TemplateServer::start().await;
    server.publish(&v1());
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desired.yaml");
    std::fs::write(
        &path,
        deployment_yaml(
            "aimably",
            &format!("{{policy: DataOnly, url: \"{}\"}}", server.url()),
        ),
    )
    .unwrap();
    let mut config = config();
    config.template_poll_interval = POLL;
    // Far longer than the test: every pass after the first is caused by a publication.
    config.resync_interval = Duration::from_secs(3600);
    let options = Options {
        concurrency: 2,
        shutdown_timeout: Duration::from_secs(5),
        ..Options::local(path)
    };
    let daemon = Daemon::bind(Arc::new(sim.clone()), config, options)
        .await
        .unwrap();
    let addr = daemon.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(daemon.run(async move {
        let _ = stopped.await;
    }));
    let metrics = || async { get(&addr, "/metrics").await.body };
    let v1_sha = sha(&v1());
    let v2_sha = sha(&v2());

    eventually(WAIT, "v1 applied and reported", || async {
        let text = metrics().await;
        (applied(&sim).as_deref() == Some(v1().as_str())
            && metric(
                &text,
                "stacksetd_template_info",
                &[
                    ("deployment", "aimably"),
                    ("policy", "DataOnly"),
                    ("sha256", &v1_sha),
                ],
            ) == Some(1.0))
        .then_some(())
    })
    .await;

    // Publication -> UpdateStackSet.
    let published = Instant::now();
    let published_at = std::time::SystemTime::now();
    server.publish(&v2());
    eventually(WAIT, "UpdateStackSet after the publication", || async {
        (calls(&sim, "UpdateStackSet") >= 1).then_some(())
    })
    .await;
    let latency = published.elapsed();
    let status = get(&addr, "/status").await.json();
    let changed_at = status["deployments"]["aimably"]["templateFetch"]["lastChangedAt"]
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .expect("the poll that saw v2 is in /status");
    let to_poll = changed_at.duration_since(published_at).unwrap_or_default();
    println!(
        "publication -> UpdateStackSet: {latency:?} with a {POLL:?} poll interval \
         (publication -> the poll that saw it: {to_poll:?}; that poll -> UpdateStackSet: {:?})",
        latency.saturating_sub(to_poll)
    );
    assert!(latency <= POLL + Duration::from_secs(2), "{latency:?}");
    eventually(WAIT, "v2 applied and its digest exported", || async {
        let text = metrics().await;
        (applied(&sim).as_deref() == Some(v2().as_str())
            && metric(
                &text,
                "stacksetd_template_info",
                &[("deployment", "aimably"), ("sha256", &v2_sha)],
            ) == Some(1.0))
        .then_some(())
    })
    .await;

    // Unchanged: polls answered 304, no further update (waited for two such polls, however slow the machine).
    let before = server.counts();
    let after = eventually(WAIT, "two more polls answered 304", || async {
        let after = server.counts();
        (after.not_modified - before.not_modified >= 2).then_some(after)
    })
    .await;
    assert_eq!(after.full, before.full, "no body fetched again");
    assert_eq!(calls(&sim, "UpdateStackSet"), 1, "exactly one update");
    let text = metrics().await;
    assert_eq!(
        metric(&text, "stacksetd_template_info", &[("sha256", &v1_sha)]),
        None,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "stacksetd_template_update_available",
            &[("deployment", "aimably")]
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &text,
            "stacksetd_template_fetches_total",
            &[("deployment", "aimably"), ("result", "not_modified")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    let status = get(&addr, "/status").await.json();
    let d = &status["deployments"]["aimably"];
    assert_eq!(d["template"]["sha256"], v2_sha.as_str(), "{d}");
    assert_eq!(d["template"]["appliedSha256"], v2_sha.as_str(), "{d}");
    assert_eq!(d["templateFetch"]["lastResult"], "not_modified", "{d}");

    // A failing server: shown in /status and counted; the applied template stays.
    server.set_mode(Mode::Status(500));
    eventually(WAIT, "the failed poll in /status", || async {
        let status = get(&addr, "/status").await.json();
        let fetch = &status["deployments"]["aimably"]["templateFetch"];
        (fetch["lastResult"] == "template_http_status"
            && fetch["lastError"].as_str()?.contains("500"))
        .then_some(())
    })
    .await;
    let text = metrics().await;
    assert!(
        metric(
            &text,
            "stacksetd_template_fetches_total",
            &[("result", "template_http_status")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);

    // A refused version: update available, counted once however many polls see it.
    server.set_mode(Mode::Normal);
    server.publish(&role_template("writes", WRITE_ACTIONS));
    eventually(WAIT, "the refusal exported", || async {
        let text = metrics().await;
        (metric(
            &text,
            "stacksetd_template_rejected_total",
            &[("deployment", "aimably"), ("reason", "allowlist")],
        ) == Some(1.0)
            && metric(
                &text,
                "stacksetd_template_update_available",
                &[("deployment", "aimably")],
            ) == Some(1.0))
        .then_some(())
    })
    .await;
    // Counted once, not per poll: another poll answered, then the count is still 1.
    let seen = server.counts();
    eventually(WAIT, "another poll", || async {
        let now = server.counts();
        (now.requests > seen.requests).then_some(())
    })
    .await;
    let text = metrics().await;
    assert_eq!(
        metric(
            &text,
            "stacksetd_template_rejected_total",
            &[("reason", "allowlist")]
        ),
        Some(1.0),
        "{text}"
    );
    let status = get(&addr, "/status").await.json();
    assert_eq!(
        status["deployments"]["aimably"]["template"]["decision"],
        "refused_allowlist"
    );
    assert_eq!(calls(&sim, "UpdateStackSet"), 1);
    assert_eq!(applied(&sim).as_deref(), Some(v2().as_str()));

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
