//! `GET /`: the organization at a glance, one server-rendered page (maud; no CDN, no build step, works
//! air-gapped). Per deployment: its state, template version and decision, a held version with its findings
//! and the digest to pin, pending steps, drift, then the organization tree (root -> OUs -> accounts), each
//! account a tile coloured by its state (`accounts::AccountState`), with a legend, counts and a filter box.
//! A few lines of plain JavaScript refresh the tiles, counts and state lines in place from /status.
//!
//! The page is built from the same redacted document /status serves, so it shows nothing /status hides.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::accounts::{AccountState, UnitView};
use crate::controller::State;
use crate::status::{DeploymentStatus, Status};

/// How often the page refreshes itself from /status.
pub const REFRESH_MS: u64 = 5000;

/// The whole page (pure).
pub fn render(status: &Status) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "stacksetd" }
                style { (PreEscaped(CSS)) }
            }
            body data-refresh-ms=(REFRESH_MS) data-refreshes="0" {
                header.top {
                    h1 { "stacksetd" }
                    span #refresh-state { "live" }
                    label {
                        "Filter "
                        input #filter type="search" placeholder="account id, name, OU or state" autocomplete="off";
                    }
                }
                @let rejected = status.desired_state.last_load.as_ref().and_then(|l| l.rejected());
                p #rejected .rejected hidden[rejected.is_none()] role="alert" {
                    "Desired state rejected: " (rejected.unwrap_or_default())
                }
                @let polling = status.events.as_ref().and_then(events_banner);
                p #events .held hidden[polling.is_none()] role="status" { (polling.unwrap_or_default()) }
                @if status.deployments.is_empty() {
                    p { "No deployment in the desired state yet (" (status.desired_state.path.display()) ")." }
                }
                @for (name, deployment) in &status.deployments {
                    (deployment_section(name, deployment))
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    page.into_string()
}

/// The one-line state: Stalled with its reason, Converged, a coverage gap with why, or what the deployment is
/// doing (the same rule as the page's script).
pub fn state_line(d: &DeploymentStatus) -> String {
    let condition = |kind: &str| d.conditions.iter().find(|c| c.kind == kind);
    if let Some(stalled) = condition("Stalled").filter(|c| c.status == "True") {
        return format!("Stalled: {}", stalled.message);
    }
    match condition("Ready") {
        Some(c) if c.status == "True" => return "Converged".to_string(),
        Some(c) if c.reason == "CoverageGap" => return format!("Coverage gap: {}", c.message),
        Some(c) if c.reason == "TemplateUnapproved" => {
            return format!("Template not approved: {}", c.message);
        }
        Some(c) if c.reason == "RolloutHalted" => return format!("Rollout halted: {}", c.message),
        Some(c) if c.reason == "RollingOut" => return format!("Rolling out: {}", c.message),
        _ => {}
    }
    match condition("Reconciling") {
        Some(c) if !c.message.is_empty() => format!("Reconciling: {}", c.message),
        _ => "Reconciling".to_string(),
    }
}

fn deployment_section(name: &str, d: &DeploymentStatus) -> Markup {
    let organization = d.observed.as_ref().and_then(|o| o.organization.as_ref());
    html! {
        section.deployment data-d=(name) {
            h2 { (name) " " small { "stack set " (d.stack_set_name) } }
            p.state { (state_line(d)) }
            (progress(d))
            (template(d))
            @if let Some(observed) = &d.observed {
                @for pending in &observed.pending_deletions {
                    p.pending { "Pending: " (pending.action) " (" (pending.summary) ") runs at " (pending.runs_at) }
                }
                @for line in &observed.pending {
                    p.pending { "Pending: " (line) }
                }
                @if let Some(drift) = &observed.drift {
                    p.drift {
                        "Drift: " (drift.status)
                        @if let Some(at) = &drift.last_check { ", last check " (at) }
                        @if drift.drifted_instances > 0 { ", " (drift.drifted_instances) " instance(s) drifted" }
                    }
                }
            }
            @match organization {
                None => p { "The organization has not been observed yet." },
                Some(org) => {
                    @let blocked = org.blocked();
                    p.blocked.(if blocked > 0 { "some" } else { "none" }) {
                        "Blocked accounts (the vendor cannot read them: missing an instance, access failed, or failed): "
                        b data-count="blocked" { (blocked) }
                    }
                    ul.legend {
                        @for state in AccountState::ALL {
                            li.(format!("s-{}", state.as_str())) title=(state.meaning()) {
                                span.swatch {} (state.as_str()) " "
                                b data-count=(state.as_str()) { (org.counts.get(state.as_str()).copied().unwrap_or(0)) }
                            }
                        }
                    }
                    div.tree { (unit(&org.root, 0)) }
                }
            }
        }
    }
}

fn progress(d: &DeploymentStatus) -> Markup {
    let Some(State::Waiting {
        operation_id,
        action,
        progress,
    }) = d.last_outcome.as_ref().map(|o| &o.state)
    else {
        return html! {};
    };
    html! {
        p.progress {
            "Waiting for " (action) " " code { (operation_id) }
            @if let Some(p) = progress {
                @if let (Some(done), Some(total)) = (p.done, p.total) {
                    " " progress value=(done) max=(total) {} " "
                }
                " " (p.line())
            }
        }
    }
}

fn template(d: &DeploymentStatus) -> Markup {
    let Some(t) = &d.template else {
        return html! {};
    };
    let held = t.decision.starts_with("held") || t.decision == "pin_mismatch";
    html! {
        p.template {
            "Template " code { (short(&t.sha256)) } " (" (t.policy) ") " a href=(t.url) { (t.url) }
            ": " (t.decision)
            @if let Some(applied) = &t.applied_sha256 { @if *applied != t.sha256 { ", applied " code { (short(applied)) } } }
        }
        @if held || t.update_available {
            div.held {
                p { b { "Held: " } (t.message) }
                @if !t.iam_diff.is_empty() {
                    ul { @for line in &t.iam_diff { li { (line) } } }
                }
                p { "To apply it, pin " code { "template.sha256: " (t.sha256) } }
            }
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Deeper than Organizations allows: a malformed document stops here.
const MAX_DEPTH: usize = 16;

fn unit(u: &UnitView, depth: usize) -> Markup {
    let label = if u.name.is_empty() { &u.id } else { &u.name };
    html! {
        details.ou open data-ou=(label) {
            summary { (label) " " small { (u.id) } }
            @if !u.accounts.is_empty() {
                ul.tiles {
                    @for a in &u.accounts {
                        li.t.(format!("s-{}", a.state.as_str())) tabindex="0" data-a=(a.id) data-n=(a.name)
                            data-ou=(label) data-s=(a.state.as_str())
                            title=(a.reason.as_deref().unwrap_or(a.state.as_str())) {
                            (a.name) " " small { (a.id) }
                        }
                    }
                }
            }
            @if depth < MAX_DEPTH {
                @for child in &u.units { (unit(child, depth + 1)) }
            }
        }
    }
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1d1d1f;background:#fafafa}
.top{display:flex;gap:1.5em;align-items:center;position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd}
h1{font-size:1.3em;margin:0}h2{font-size:1.15em;margin:1.2em 0 .2em}h2 small{color:#666;font-weight:normal}
#refresh-state{color:#666;font-size:.9em}#filter{width:22em}
.state{font-weight:600;margin:.2em 0}.rejected{border-left:4px solid #b00020;padding:.4em .8em;background:#fdecee;font-weight:600}.held{border-left:4px solid #c77700;padding-left:.8em;background:#fff6e6}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1em;margin:.6em 0}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.3em;vertical-align:-1px;background:var(--c)}
details.ou{margin:.2em 0 .2em 1em}summary{cursor:pointer;font-weight:600}summary small{color:#777;font-weight:normal}
.tiles{list-style:none;padding:0;margin:.3em 0 .5em;display:flex;flex-wrap:wrap;gap:4px}
.t{background:var(--c);color:var(--f,#fff);padding:3px 6px;border-radius:3px;font-size:12px;cursor:default;position:relative}
.t small{opacity:.8}.t:focus{outline:3px solid #1a4fd6;outline-offset:1px}
.t:focus::after{content:attr(title);position:absolute;left:0;top:100%;z-index:2;background:#222;color:#fff;padding:4px 6px;border-radius:3px;white-space:pre-wrap;width:24em}
.hidden{display:none}
.s-current{--c:#2e7d32}.s-missing{--c:#c62828}.s-failed{--c:#6a1b9a}.s-outdated{--c:#f9a825;--f:#222}
.s-access-failed{--c:#e65100;--f:#fff}.s-inactive{--c:#9e9e9e}.s-excluded{--c:#cfd8dc;--f:#222}
.s-management{--c:#1565c0}.s-outside{--c:#eceff1;--f:#555}
.t::before,.legend li::before{font-weight:700;margin-right:.25em}
.s-missing::before{content:"\2298  no instance"}.s-access-failed::before{content:"\26A0  no access"}
.s-failed::before{content:"\2716  failed"}.s-outdated::before{content:"\21BB"}.s-current::before{content:"\2713"}
.s-inactive::before{content:"\2016"}.s-excluded::before{content:"\2212"}.s-management::before{content:"M"}
.s-outside::before{content:"\00B7"}.legend .s-missing::before{content:"\2298"}
.legend .s-access-failed::before{content:"\26A0"}.legend .s-failed::before{content:"\2716"}.t.s-missing,.t.s-access-failed,.t.s-failed{outline:2px solid #000;outline-offset:-2px}
.blocked{font-weight:600;margin:.3em 0}.blocked.some{color:#b00020}.blocked.none{color:#2e7d32}
"#;

/// The banner of an event queue that cannot be read (the daemon polls meanwhile); None while it is read. The
/// script below writes the same words.
fn events_banner(q: &crate::status::EventQueueStatus) -> Option<String> {
    let error = q.unreadable()?;
    Some(format!(
        "Event queue unreadable since {}: polling instead ({error})",
        q.since
    ))
}

/// Refreshes tiles, counts and state lines in place from /status; the filter hides tiles that do not match.
const SCRIPT: &str = r#"
(function () {
  var body = document.body, note = document.getElementById('refresh-state');
  function stateLine(d) {
    var c = {};
    (d.conditions || []).forEach(function (x) { c[x.type] = x; });
    if (c.Stalled && c.Stalled.status === 'True') return 'Stalled: ' + c.Stalled.message;
    if (c.Ready && c.Ready.status === 'True') return 'Converged';
    if (c.Ready && c.Ready.reason === 'CoverageGap') return 'Coverage gap: ' + c.Ready.message;
    if (c.Ready && c.Ready.reason === 'TemplateUnapproved') return 'Template not approved: ' + c.Ready.message;
    if (c.Ready && c.Ready.reason === 'RolloutHalted') return 'Rollout halted: ' + c.Ready.message;
    if (c.Ready && c.Ready.reason === 'RollingOut') return 'Rolling out: ' + c.Ready.message;
    return c.Reconciling && c.Reconciling.message ? 'Reconciling: ' + c.Reconciling.message : 'Reconciling';
  }
  function apply(status) {
    var banner = document.getElementById('rejected');
    var load = status.desiredState && status.desiredState.lastLoad;
    if (banner) {
      var bad = load && load.result !== 'valid';
      banner.hidden = !bad;
      if (bad) {
        var p = (load.problems || [])[0];
        banner.textContent = 'Desired state rejected at ' + load.at + ': ' +
          (p ? p.file + ':' + p.line + ':' + p.column + ': ' + (p.field ? p.field + ': ' : '') + p.message
             : String(load.error || 'unreadable').split('\n')[0]) +
          '; the last valid state is still reconciled';
      }
    }
    var events = document.getElementById('events'), q = status.events;
    if (events) {
      var down = q && q.mode !== 'events' && q.lastError;
      events.hidden = !down;
      if (down) events.textContent = 'Event queue unreadable since ' + q.since + ': polling instead (' + q.lastError + ')';
    }
    var deployments = status.deployments || {};
    document.querySelectorAll('section.deployment').forEach(function (section) {
      var d = deployments[section.dataset.d];
      if (!d) return;
      var line = section.querySelector('.state');
      if (line) line.textContent = stateLine(d);
      var org = d.observed && d.observed.organization;
      if (!org) return;
      var byId = {};
      (function walk(u) {
        (u.accounts || []).forEach(function (a) { byId[a.id] = a; });
        (u.units || []).forEach(walk);
      })(org.root);
      section.querySelectorAll('li.t').forEach(function (tile) {
        var a = byId[tile.dataset.a];
        if (!a || tile.dataset.s === a.state) return;
        tile.classList.remove('s-' + tile.dataset.s);
        tile.classList.add('s-' + a.state);
        tile.dataset.s = a.state;
        tile.title = a.reason || a.state;
      });
      Object.keys(org.counts || {}).forEach(function (s) {
        var count = section.querySelector('[data-count="' + s + '"]');
        if (count) count.textContent = org.counts[s];
      });
      var blocked = ['missing', 'access-failed', 'failed'].reduce(function (n, s) {
        return n + (org.counts && org.counts[s] || 0);
      }, 0);
      var b = section.querySelector('[data-count="blocked"]');
      if (b) {
        b.textContent = blocked;
        b.parentNode.className = 'blocked ' + (blocked > 0 ? 'some' : 'none');
      }
    });
    body.dataset.refreshes = String(Number(body.dataset.refreshes) + 1);
    note.textContent = 'updated ' + new Date().toLocaleTimeString();
    filter();
  }
  function refresh() {
    fetch('/status', { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('/status answered ' + r.status); return r.json(); })
      .then(apply)
      .catch(function (e) { note.textContent = 'not updated: ' + e.message; });
  }
  var box = document.getElementById('filter');
  function filter() {
    var q = box.value.trim().toLowerCase();
    document.querySelectorAll('li.t').forEach(function (t) {
      var text = (t.dataset.a + ' ' + t.dataset.n + ' ' + t.dataset.ou + ' ' + t.dataset.s).toLowerCase();
      t.classList.toggle('hidden', q !== '' && text.indexOf(q) < 0);
    });
  }
  box.addEventListener('input', filter);
  setInterval(refresh, Number(body.dataset.refreshMs) || 5000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_status_renders_a_page_that_names_the_file() {
        let page = render(&Status::default());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("No deployment in the desired state yet"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing fetched from elsewhere"
        );
    }

    #[test]
    fn an_unreadable_event_queue_is_a_banner_and_a_read_one_is_not() {
        let mut status = Status::default();
        use crate::status::QueueMode;
        let queue = |mode: QueueMode, error: Option<&str>| crate::status::EventQueueStatus {
            queue_url: "https://sqs.us-east-1.amazonaws.com/111111111111/stacksetd-events".into(),
            mode,
            since: "2026-12-07T11:00:00Z".into(),
            last_error: error.map(str::to_string),
            ..Default::default()
        };
        status.events = Some(queue(
            QueueMode::Polling,
            Some("sqs:ReceiveMessage failed (AccessDenied): <no>"),
        ));
        let page = render(&status);
        assert!(
            page.contains("Event queue unreadable since 2026-12-07T11:00:00Z: polling instead (sqs:ReceiveMessage failed (AccessDenied): &lt;no&gt;)"),
            "{page}"
        );
        for quiet in [Some(queue(QueueMode::Events, None)), None] {
            status.events = quiet;
            let page = render(&status);
            assert!(
                page.contains(r#"<p class="held" id="events" hidden role="status"></p>"#),
                "{page}"
            );
        }
    }
}
