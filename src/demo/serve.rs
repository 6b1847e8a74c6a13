//! `stacksetd demo --serve`: the daemon itself, with its HTTP endpoints and page, on the embedded simulated
//! organization, so a new user sees what an operator sees without an AWS account. A scenario keeps changing the
//! organization while the daemon reconciles it: accounts join, the vendor publishes template versions (one it
//! applies, one that widens permissions and is held), and an account is blocked by a hand-made role, then
//! unblocked. Everything else is the real daemon: the same `Daemon` as `stacksetd run`, behind the same gate.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DATA_ONLY_TEMPLATE, EXAMPLE_DESIRED, SCHEDULING_TEMPLATE, TempDir};
use crate::cloud::Cloud;
use crate::cloud::sim::{Sim, SimConfig};
use crate::controller;
use crate::daemon::{Daemon, Options};
use crate::error::Error;

/// Between two events of the scenario: long enough to see each one on the page (it refreshes itself), short
/// enough that a first visit within a minute sees an account join, a publication and a blocked account.
const EVENT_INTERVAL: Duration = Duration::from_secs(12);
/// One instance takes this long to deploy in the simulation (AWS: under a minute per account).
const INSTANCE_DURATION: Duration = Duration::from_secs(3);
const OPERATION_OVERHEAD: Duration = Duration::from_secs(1);
/// The daemon's timers, shortened so the page moves while someone watches (the production defaults are minutes).
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
const ORG_SCAN_INTERVAL: Duration = Duration::from_secs(5);
const TEMPLATE_POLL_INTERVAL: Duration = Duration::from_secs(3);
const COVERAGE_GRACE: Duration = Duration::from_secs(20);
/// The reason the blocked account's deployments fail: the vendor guide's own example of a blocked account.
const BLOCKED_REASON: &str = "AimablyMemberRole already exists and is not managed by this stack";

/// Run the daemon on the simulated organization until `shutdown`, with the scenario beside it.
pub async fn serve(listen: SocketAddr, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let dir = TempDir::new("serve")?;
    let template = dir.write("aimably.json", DATA_ONLY_TEMPLATE)?;
    let desired = dir.write("desired.yaml", &desired_state(&template))?;

    let sim = Sim::realistic(SimConfig {
        instance_duration: INSTANCE_DURATION,
        operation_overhead: OPERATION_OVERHEAD,
        ..SimConfig::default()
    });
    let config = controller::Config {
        resync_interval: RESYNC_INTERVAL,
        org_scan_interval: ORG_SCAN_INTERVAL,
        template_poll_interval: TEMPLATE_POLL_INTERVAL,
        coverage_grace: COVERAGE_GRACE,
        poll_min: Duration::from_millis(500),
        poll_max: Duration::from_secs(2),
        error_backoff_base: Duration::from_secs(1),
        error_backoff_max: Duration::from_secs(10),
        track_progress: true,
        ..controller::Config::default()
    };
    let options = Options {
        desired_state: desired.clone(),
        listen,
        concurrency: 4,
        shutdown_timeout: Duration::from_secs(5),
        access_check_interval: Duration::from_secs(3600),
        access_check_concurrency: 4,
        status_token: None,
        allowed_hosts: Vec::new(),
        max_read_rate: 100,
    };
    let daemon = Daemon::bind(Arc::new(sim.clone()) as Arc<dyn Cloud>, config, options).await?;
    let addr = daemon.local_addr();
    println!(
        "stacksetd demo --serve: the daemon on a simulated organization of {} accounts (no AWS account)\n\
         \x20 the page     http://{addr}/\n\
         \x20 metrics      http://{addr}/metrics\n\
         \x20 status JSON  http://{addr}/status\n\
         \x20 desired state {} (edit it: the daemon takes the change)\n\
         The organization keeps changing: an event every {} s below. Ctrl-C stops.",
        sim.accounts().len(),
        desired.display(),
        EVENT_INTERVAL.as_secs()
    );

    let stop = CancellationToken::new();
    let scenario = tokio::spawn(scenario(sim, template, stop.clone()));
    let result = daemon.run(shutdown).await;
    stop.cancel();
    let _ = scenario.await;
    drop(dir);
    result
}

/// The example desired state, its template read from `template` (a file the scenario rewrites to publish).
fn desired_state(template: &Path) -> String {
    let mut out = String::new();
    for line in EXAMPLE_DESIRED.lines() {
        out.push_str(line);
        out.push('\n');
        if line.trim_start().starts_with("policy: DataOnly") {
            out.push_str(&format!("    url: file://{}\n", template.display()));
        }
    }
    out
}

/// The events, in a loop: each printed as it happens, so the page can be read beside them.
async fn scenario(sim: Sim, template: PathBuf, stop: CancellationToken) {
    let started = tokio::time::Instant::now();
    let say = |text: String| println!("[+{:>3} s] {text}", started.elapsed().as_secs());
    let mut joined = 0;
    let mut revision = 0;
    for round in 0.. {
        for event in 0..4 {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(EVENT_INTERVAL) => {}
            }
            match event {
                0 | 2 => {
                    joined += 1;
                    let unit = ["Prod", "Dev", "Sandbox"][joined % 3];
                    let parent = sim.ou_named(unit).unwrap_or_else(|| sim.root_id());
                    let id =
                        sim.add_account(&parent, &format!("new-{unit}-{joined}").to_lowercase());
                    say(format!(
                        "account {id} joins the {unit} OU: auto-deployment gives it the role"
                    ));
                }
                1 => {
                    revision += 1;
                    let victim = victim(&sim, round);
                    sim.fail_account(&victim, BLOCKED_REASON);
                    publish(&template, &revision_of(revision));
                    say(format!(
                        "the vendor publishes revision {revision} (a description change, not widening): the daemon \
                         applies it; account {victim} has a hand-made AimablyMemberRole in the way, so it is blocked"
                    ));
                }
                _ => {
                    publish(&template, SCHEDULING_TEMPLATE);
                    say(
                        "the vendor publishes a version that adds scheduling permissions: it widens, so it is held \
                         for review (the page shows the IAM diff)"
                            .into(),
                    );
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(EVENT_INTERVAL) => {}
                    }
                    let victim = victim(&sim, round);
                    sim.heal_account(&victim);
                    revision += 1;
                    publish(&template, &revision_of(revision));
                    say(format!(
                        "the hand-made role in {victim} is removed and the vendor publishes revision {revision} \
                         (not widening): the daemon applies it, and {victim} is connected again"
                    ));
                }
            }
        }
    }
}

/// The account a round blocks: an active member account, a different one each round.
fn victim(sim: &Sim, round: usize) -> String {
    let members = super::active_members(sim);
    members[round % members.len().max(1)].clone()
}

/// The DataOnly template with its description marked as a revision: a new version that grants nothing more.
fn revision_of(revision: u32) -> String {
    DATA_ONLY_TEMPLATE.replacen(
        "\"Description\": \"Aimably: usage data only.",
        &format!("\"Description\": \"Aimably: usage data only (revision {revision})."),
        1,
    )
}

/// Publish by replacing the file at once (write beside it, then rename), as a web server would swap it.
fn publish(template: &Path, body: &str) {
    let next = template.with_extension("json.next");
    if std::fs::write(&next, body).is_ok() {
        let _ = std::fs::rename(&next, template);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenarios_templates_are_what_they_say() {
        let revision = revision_of(3);
        assert_ne!(revision, DATA_ONLY_TEMPLATE, "a revision is a new version");
        assert!(revision.contains("(revision 3)"));
        let desired = desired_state(Path::new("/tmp/x/aimably.json"));
        assert!(
            desired.contains("    url: file:///tmp/x/aimably.json\n"),
            "{desired}"
        );
        let parsed = crate::desired::parse_str(&desired, Path::new("desired.yaml")).expect("valid");
        assert_eq!(
            parsed[0].spec.template.url.as_deref(),
            Some("file:///tmp/x/aimably.json")
        );
    }
}
