//! Human and machine output of the CLI: `plan` in the style of `terraform plan` (each change from -> to), the
//! JSON forms, and progress lines while a pass waits on an operation (an updating line in a terminal, plain
//! lines when piped).

use std::io::{IsTerminal, Write};

use crate::controller::{Outcome, Report, State, TemplateReport};
use crate::desired::Deployment;
use crate::error::Error;
use crate::plan::{Action, Plan};

pub use crate::redact::{safe, safe_keeping};

/// The orphaned stack sets (tagged for deployments the desired state no longer names), for `plan`.
pub fn orphans_text(orphans: &Result<Vec<crate::controller::ownership::Orphan>, Error>) -> String {
    match orphans {
        Ok(list) if list.is_empty() => String::new(),
        Ok(list) => list
            .iter()
            .map(|o| {
                format!(
                    "orphaned stack set {} (tagged for deployment {}): left in place; {}\n",
                    safe(&o.stack_set),
                    safe(&o.deployment),
                    safe(&o.advice)
                )
            })
            .collect(),
        Err(e) => format!("orphaned stack sets: not scanned ({e})\n"),
    }
}

/// The result of planning one deployment.
pub struct Planned<'a> {
    pub deployment: &'a Deployment,
    pub result: Result<(Plan, Report), Error>,
}

fn symbol(action: &Action) -> &'static str {
    match action {
        Action::CreateStackSet { .. }
        | Action::CreateStackInstances { .. }
        | Action::CreateStack { .. } => "+",
        Action::UpdateStackSet { .. }
        | Action::UpdateStackInstances { .. }
        | Action::UpdateStack { .. } => "~",
        Action::DeleteStackInstances { .. }
        | Action::DeleteStackSet
        | Action::DeleteStack { .. } => "-",
    }
}

/// `terraform plan`-style text.
pub fn plan_text(planned: &[Planned<'_>]) -> String {
    plan_text_warning_once(planned, &mut std::collections::BTreeSet::new())
}

/// A staged rollout's phases, as `plan` and `stacksetd rollout status` print them.
pub fn rollout_text(rollout: &crate::controller::rollout::Status) -> String {
    let mut out = format!(
        "  rollout of version {} ({}): {}\n",
        rollout.version,
        rollout.phase.label(),
        safe(&rollout.message)
    );
    for line in rollout.phase_lines() {
        out.push_str(&format!("    {line}\n"));
    }
    if let Some(at) = &rollout.bake_ends_at {
        out.push_str(&format!("    bake ends at {at}\n"));
    }
    if !rollout.halted_at.is_empty() {
        out.push_str(&format!(
            "    halted at: {}\n",
            safe(&rollout.halted_at.join(", "))
        ));
    }
    out
}

/// [`plan_text`], for a sequence of plans (the demo's): a template version's warnings are printed in full the
/// first time, then counted; `warned` holds the digests already printed.
pub fn plan_text_warning_once(
    planned: &[Planned<'_>],
    warned: &mut std::collections::BTreeSet<String>,
) -> String {
    let mut out = String::new();
    let mut total = 0;
    for p in planned {
        let d = p.deployment;
        out.push_str(&format!(
            "deployment {} (stack set {}):\n",
            d.name(),
            d.spec.stack_set_name
        ));
        match &p.result {
            Err(e) => out.push_str(&format!("  error: {}\n", safe(&e.to_string()))),
            Ok((plan, report)) => {
                match &report.template {
                    Some(t) => out.push_str(&template_text(t, warned)),
                    None => {
                        if let Some(sha) = &report.template_sha256 {
                            out.push_str(&format!("  template sha256:{sha}\n"));
                        }
                    }
                }
                if let Some(check) = &report.auto_deployment_targets {
                    if !check.missing.is_empty() {
                        out.push_str(&format!(
                            "  auto-deployment targets: CloudFormation does not auto-deploy to {} (registered again \
                             when two checks in a row find it)\n",
                            safe(&check.missing.join(", "))
                        ));
                    }
                    if !check.unexpected.is_empty() {
                        out.push_str(&format!(
                            "  auto-deployment targets beyond the desired state: {}\n",
                            safe(&check.unexpected.join(", "))
                        ));
                    }
                }
                for op in &report.running_operations {
                    out.push_str(&format!(
                        "  running: {} operation {}: {}\n",
                        op.action,
                        safe(&op.operation_id),
                        op.progress.line()
                    ));
                }
                if let Some(rollout) = &report.rollout {
                    out.push_str(&rollout_text(rollout));
                }
                if plan.is_empty() && report.rollout.is_none() {
                    out.push_str("  no changes: the stack set matches the desired state\n");
                }
                for note in &plan.notes {
                    out.push_str(&format!("  note: {}\n", safe(note)));
                }
                for d in report.pending_deletions.iter().filter(|d| d.waiting) {
                    out.push_str(&format!(
                        "  pending: {} ({}) waits for deletion_delay; runs at {} if the desired state stays as it is\n",
                        d.action,
                        safe(&d.summary),
                        d.runs_at
                    ));
                }
                for step in &plan.steps {
                    total += 1;
                    out.push_str(&format!(
                        "  {} {}: {}\n",
                        symbol(&step.action),
                        step.action.name(),
                        safe(&step.summary)
                    ));
                    for c in &step.changes {
                        out.push_str(&format!(
                            "      {}: {} -> {}\n",
                            safe(&c.field),
                            safe(&c.from),
                            safe(&c.to)
                        ));
                    }
                }
                if report.missing_instances > 0 {
                    out.push_str(&format!(
                        "  note: {} targeted account/Region pair(s) have no instance yet\n",
                        report.missing_instances
                    ));
                }
                for warning in &report.target_warnings {
                    out.push_str(&format!("  warning: {}\n", safe(warning)));
                }
            }
        }
    }
    out.push_str(&format!(
        "Plan: {total} change(s) across {} deployment(s).\n",
        planned.len()
    ));
    out
}

/// The template lines of a plan: the version fetched and the applied one, the update decision, the IAM diff and
/// any allowlist offenses.
fn template_text(t: &TemplateReport, warned: &mut std::collections::BTreeSet<String>) -> String {
    let mut out = format!(
        "  template sha256:{} ({}, {})\n",
        t.sha256,
        t.policy,
        safe(&t.url)
    );
    if let Some(applied) = &t.applied_sha256
        && *applied != t.sha256
    {
        out.push_str(&format!("  applied  sha256:{applied}\n"));
    }
    if t.decision != "up_to_date" {
        out.push_str(&format!("  template update: {}\n", safe(&t.message)));
    }
    if !t.iam_diff.is_empty() {
        out.push_str("  IAM diff (applied -> new; the guard's findings):\n");
        for line in &t.iam_diff {
            out.push_str(&format!("      {}\n", safe(line)));
        }
    }
    for o in &t.offenses {
        out.push_str(&format!(
            "      refused: {} at {}: {}\n",
            safe(&o.action),
            safe(&o.location),
            safe(&o.reason)
        ));
    }
    if warned.insert(t.sha256.clone()) {
        for w in &t.warnings {
            out.push_str(&format!("  warning: {}\n", safe(w)));
        }
    } else if !t.warnings.is_empty() {
        out.push_str(&format!(
            "  {} template warning(s) for this version, as printed above\n",
            t.warnings.len()
        ));
    }
    if let Some(error) = t.source.as_ref().and_then(|s| s.last_error.as_ref()) {
        out.push_str(&format!(
            "  last template fetch failed (the version above stays in use): {}\n",
            safe(error)
        ));
    }
    out
}

/// `plan --output json`: the whole document, typed (camelCase keys like /status; each deployment's template once).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument<'a> {
    pub deployments: Vec<PlannedDeployment<'a>>,
    /// Steps planned over all deployments.
    pub changes: usize,
    /// Stack sets tagged for deployments the desired state no longer names, or why they could not be listed.
    pub orphaned_stack_sets: OrphanScan,
}

/// One deployment of [`PlanDocument`]: its steps and report, or the error that stopped its plan.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDeployment<'a> {
    pub name: &'a str,
    pub stack_set_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<&'a TemplateReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<PlannedAction<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<&'a Report>,
}

#[derive(Debug, serde::Serialize)]
pub struct PlannedAction<'a> {
    pub action: &'static str,
    pub summary: &'a str,
    pub changes: &'a [crate::plan::Change],
}

/// The orphan scan's answer: the stack sets found, or `{"error": ...}`.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum OrphanScan {
    Found(Vec<crate::controller::ownership::Orphan>),
    Failed { error: String },
}

pub fn plan_json<'a>(planned: &'a [Planned<'a>], orphans: OrphanScan) -> PlanDocument<'a> {
    let deployments: Vec<PlannedDeployment<'a>> = planned
        .iter()
        .map(|p| {
            let mut entry = PlannedDeployment {
                name: p.deployment.name(),
                stack_set_name: &p.deployment.spec.stack_set_name,
                error: None,
                template_sha256: None,
                template: None,
                actions: None,
                report: None,
            };
            match &p.result {
                Err(e) => entry.error = Some(e.to_string()),
                Ok((plan, report)) => {
                    entry.template_sha256 = report.template_sha256.as_deref();
                    entry.template = report.template.as_ref();
                    entry.actions = Some(
                        plan.steps
                            .iter()
                            .map(|s| PlannedAction {
                                action: s.action.name(),
                                summary: &s.summary,
                                changes: &s.changes,
                            })
                            .collect(),
                    );
                    entry.report = Some(report);
                }
            }
            entry
        })
        .collect();
    let changes = planned
        .iter()
        .filter_map(|p| p.result.as_ref().ok())
        .map(|(plan, _)| plan.steps.len())
        .sum();
    PlanDocument {
        deployments,
        changes,
        orphaned_stack_sets: orphans,
    }
}

/// Prints what a converging deployment does. In a terminal, waiting progress rewrites one line.
pub struct ProgressPrinter {
    tty: bool,
    last: Option<String>,
}

impl Default for ProgressPrinter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressPrinter {
    pub fn new() -> Self {
        ProgressPrinter {
            tty: std::io::stdout().is_terminal(),
            last: None,
        }
    }

    pub fn outcome(&mut self, deployment: &str, outcome: &Outcome) {
        let line = match &outcome.state {
            State::Converged => format!(
                "{deployment}: converged: {} instance(s), {} account(s) targeted, {} missing",
                outcome.report.instance_total(),
                outcome.report.accounts_targeted,
                outcome.report.missing_instances
            ),
            State::CoverageGap(gap) => format!("{deployment}: not converged: {}", gap.why),
            State::TemplateUnapproved { message } => {
                format!("{deployment}: not converged: {message}")
            }
            State::RollingOut(rollout) => format!(
                "{deployment}: rolling out {} ({}): {}",
                rollout.version,
                rollout.phase.label(),
                rollout.message
            ),
            State::Acted {
                action,
                operation_id,
                summary,
            } => match operation_id {
                Some(id) => format!("{deployment}: {action} submitted as {id}: {summary}"),
                None => format!("{deployment}: {action} done: {summary}"),
            },
            State::Waiting {
                operation_id,
                action,
                progress,
            } => match progress {
                Some(p) => format!(
                    "{deployment}: waiting for {action} {operation_id}: {}",
                    p.line()
                ),
                None => format!("{deployment}: waiting for {action} {operation_id}"),
            },
            State::Settling => format!("{deployment}: instances still settling"),
            State::Suspended { pending } => {
                format!("{deployment}: suspended: {pending} change(s) pending, nothing applied")
            }
            State::DeletionPending {
                action,
                summary,
                runs_at,
            } => format!(
                "{deployment}: {action} waits for deletion_delay ({}): {summary}; runs at {runs_at} if the desired \
                 state stays as it is",
                crate::controller::DELETION_DELAY_REASON
            ),
        };
        self.line(
            line,
            matches!(outcome.state, State::Waiting { .. } | State::Settling),
        );
    }

    pub fn message(&mut self, line: String) {
        self.line(line, false);
    }

    fn line(&mut self, line: String, transient: bool) {
        if self.last.as_deref() == Some(line.as_str()) {
            return;
        }
        let mut shown = crate::telemetry::progress_line();
        let mut out = std::io::stdout().lock();
        if self.tty && transient {
            let _ = write!(out, "\r\x1b[2K{line}");
            *shown = Some(line.clone());
        } else {
            if shown.take().is_some() {
                let _ = writeln!(out);
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        self.last = Some(line);
    }

    /// End a rewritten line before other output.
    pub fn finish(&mut self) {
        let mut shown = crate::telemetry::progress_line();
        if shown.take().is_some() {
            println!();
        }
    }
}
