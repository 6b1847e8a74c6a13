//! Rule 9: the plain stack `spec.managementAccount` keeps in the management account (a service-managed stack set
//! never deploys there). It carries what the stack set carries: the same checked template version, parameters
//! and tags (the owner tag and the approval record included), in the deployment's first Region, under the
//! stack set's name.
//!
//! The rules, and why:
//! - Only a stack tagged for this deployment is ever changed or deleted; one of that name without the tag is
//!   reported and left alone (someone made it by hand), whatever the desired state says.
//! - Its steps come after every stack set step: the member accounts get a new version first, and the plan never
//!   holds two of our operations at once.
//! - A stack CloudFormation is working on gets no step (the pass settles); a creation that failed
//!   (ROLLBACK_COMPLETE and kin) can only be deleted, so it is, and created again by a later pass; a stack stuck
//!   in UPDATE_ROLLBACK_FAILED needs a person (ContinueUpdateRollback), so it is only reported.
//! - `deploy: false` or `ensure: Absent` delete our stack; deletions wait for `deletion_delay` like every other.
//! - When the first Region changes, our stack in the old Region is deleted before one is created in the new
//!   (a named IAM role is global per account: both cannot exist at once).
//! - Capabilities are acknowledgements, not stack state, and the description belongs to the template: neither
//!   is compared, so neither can make an update CloudFormation answers with "No updates are to be performed".

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::steps::settings_changes;
use super::{Action, Change, Desired, Observed, Purpose, Step};
use super::{OWNER_TAG, TEMPLATE_TAG};
use crate::cloud::{ObservedStack, StackSetSettings};
use crate::error::Error;

/// The value DescribeStacks shows for a NoEcho parameter.
const MASKED: &str = "****";

/// What a pass saw of the management-account stack (`None` in [`Observed`] when the deployment has no
/// `spec.managementAccount`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagementStackObserved {
    /// Where the stack belongs: the deployment's first Region.
    pub region: String,
    /// The stack of the stack set's name there, whoever made it.
    pub stack: Option<ObservedStack>,
    /// Its template (GetTemplate), read when the stack is this deployment's and complete.
    pub template_body: Option<String>,
    /// This deployment's stacks in the other desired Regions: looked for only when `stack` is missing and one is
    /// wanted, before a creation.
    pub elsewhere: Vec<ObservedStack>,
    /// The last creation this process saw fail, with what it carried.
    pub failed_creation: Option<FailedCreation>,
}

/// A creation that rolled back: the same template version and parameters are not sent again (a role of that
/// name made by hand in the management account would fail every time); a new version, new parameters or a
/// restart try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCreation {
    /// The approval record the failed stack carried.
    pub template_sha256: Option<String>,
    pub parameters: BTreeMap<String, String>,
    /// CloudFormation's StackStatusReason.
    pub reason: String,
}

impl FailedCreation {
    /// The failure of a creation from this stack, if it is one.
    pub fn of(stack: &ObservedStack) -> Option<FailedCreation> {
        matches!(
            stack.status.as_str(),
            "CREATE_FAILED" | "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED"
        )
        .then(|| FailedCreation {
            template_sha256: stack.tags.get(TEMPLATE_TAG).cloned(),
            parameters: stack.parameters.clone(),
            reason: stack
                .status_reason
                .clone()
                .unwrap_or_else(|| stack.status.clone()),
        })
    }

    /// Whether creating the desired stack would send what failed.
    fn repeats(&self, desired: &StackSettings) -> bool {
        self.template_sha256.as_ref() == desired.tags.get(TEMPLATE_TAG)
            && self.parameters == desired.parameters
    }
}

impl ManagementStackObserved {
    /// CloudFormation is working on one of this deployment's stacks: nothing is submitted until it is done.
    pub fn busy(&self, owner: &str) -> bool {
        self.stack
            .iter()
            .chain(&self.elsewhere)
            .any(|s| owned(s, owner) && s.in_progress())
    }
}

/// What CreateStack and UpdateStack carry (the service role comes from the spec when sending).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackSettings {
    pub template_body: String,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

/// Whether the stack is tagged for deployment `owner` (enough for a report, never for acting: see [`ours`]).
pub fn owned(stack: &ObservedStack, owner: &str) -> bool {
    stack.tags.get(OWNER_TAG).is_some_and(|o| o == owner)
}

/// Whether stacksetd may act on the stack for deployment `owner` with service role `role`: tagged for it, and
/// bound to that very role (or to none when none is configured). A tag anyone who can create a stack there can
/// forge; the role they cannot give a stack without iam:PassRole on it. Updating a forged stack with the service
/// role would bind the role to it, and CloudFormation uses a stack's bound role for every later operation that
/// names none: its maker could then run any template as the role.
pub fn ours(stack: &ObservedStack, owner: &str, role: Option<&str>) -> bool {
    owned(stack, owner) && stack.role_arn.as_deref() == role
}

/// The management-account stack's steps and notes.
pub(super) fn steps(
    desired: Desired<'_>,
    observed: &Observed,
) -> Result<(Vec<Step>, Vec<String>), Error> {
    let Some(m) = &observed.management_stack else {
        return Ok(Default::default());
    };
    let spec = &desired.deployment.spec;
    let owner = desired.deployment.name();
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let role = spec
        .management_account
        .as_ref()
        .and_then(|m| m.service_role_arn.as_deref());
    if let Some(stack) = m.stack.as_ref().filter(|s| !ours(s, owner, role)) {
        notes.push(if owned(stack, owner) {
            format!(
                "managementAccount: stack {} in {} carries the {OWNER_TAG}={owner} tag but its service role is {} \
                 where the deployment's is {}: stacksetd acts only on a stack bound to the role it uses (a tag \
                 anyone can forge, the role only who may pass it); it is left as it is: delete it to have \
                 stacksetd create its own, or set serviceRoleArn to the stack's role",
                stack.name,
                stack.region,
                stack.role_arn.as_deref().unwrap_or("none"),
                role.unwrap_or("none")
            )
        } else {
            format!(
                "managementAccount: stack {} in {} is not stacksetd's (no {OWNER_TAG}={owner} tag): it is left as \
                 it is; delete or rename it to have stacksetd keep its own there",
                stack.name, stack.region
            )
        });
        return Ok((steps, notes));
    }
    let want = spec.wants_management_stack();
    let why_delete = if want {
        "the first Region is now ".to_string() + &m.region
    } else if spec.management_account.as_ref().is_some_and(|a| !a.deploy) {
        "managementAccount.deploy is false".to_string()
    } else {
        "ensure: Absent".to_string()
    };
    for stack in m.elsewhere.iter().filter(|s| ours(s, owner, role)) {
        if !stack.in_progress() {
            steps.push(delete_step(stack, &why_delete));
        }
    }
    match (&m.stack, want) {
        (None, true) if m.elsewhere.iter().any(|s| ours(s, owner, role)) => {}
        (None, true) => {
            let settings = wanted(desired)?;
            match m.failed_creation.as_ref().filter(|f| f.repeats(&settings)) {
                Some(failed) => notes.push(format!(
                    "managementAccount: creating stack {} in {} failed ({}); the same template version and \
                     parameters are not sent again: fix the cause, then publish or pin another version, change a \
                     parameter, or restart stacksetd",
                    spec.stack_set_name, m.region, failed.reason
                )),
                None => steps.push(create_step(desired, &m.region, settings)),
            }
        }
        (None, false) => {}
        (Some(stack), _) if stack.in_progress() => {}
        (Some(stack), false) => steps.push(delete_step(stack, &why_delete)),
        (Some(stack), true) if stack.dead() => steps.push(delete_step(
            stack,
            &format!(
                "it is {}{}: CloudFormation moves it on only by deleting it, and the next pass creates it again",
                stack.status,
                stack
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        )),
        (Some(stack), true) if stack.usable() => {
            if let Some(step) = update_step(desired, stack, m.template_body.as_deref())? {
                steps.push(step);
            }
        }
        (Some(stack), true) => notes.push(format!(
            "managementAccount: stack {} in {} is {}: stacksetd cannot move it on (UPDATE_ROLLBACK_FAILED needs \
             ContinueUpdateRollback, REVIEW_IN_PROGRESS a change set executed or deleted); a person must",
            stack.name, stack.region, stack.status
        )),
    }
    Ok((steps, notes))
}

fn wanted(desired: Desired<'_>) -> Result<StackSettings, Error> {
    let spec = &desired.deployment.spec;
    Ok(StackSettings {
        template_body: desired.template.body_for_api()?.to_string(),
        parameters: spec.parameters.clone(),
        capabilities: spec.capability_names(),
        tags: spec.tags.clone(),
    })
}

fn create_step(desired: Desired<'_>, region: &str, settings: StackSettings) -> Step {
    let name = &desired.deployment.spec.stack_set_name;
    Step {
        purpose: Purpose::Converge,
        summary: format!(
            "create stack {name} in the management account in {region} (template {})",
            desired.template.short_digest()
        ),
        changes: vec![Change {
            field: "managementAccount.stack".into(),
            from: "(absent)".into(),
            to: format!("{name} in {region}"),
        }],
        action: Action::CreateStack {
            region: region.to_string(),
            settings,
        },
    }
}

/// An UpdateStack when the template, a parameter or a tag differs (compared as the stack set's settings are).
fn update_step(
    desired: Desired<'_>,
    stack: &ObservedStack,
    template_body: Option<&str>,
) -> Result<Option<Step>, Error> {
    let settings = wanted(desired)?;
    let spec = &desired.deployment.spec;
    let parameters = stack
        .parameters
        .iter()
        .map(|(key, value)| {
            let value = match spec.parameters.get(key) {
                Some(want) if value == MASKED => want.clone(),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    let as_set = StackSetSettings {
        description: spec.description.clone(),
        // Not read (GetTemplate failed to answer): never a reason to update.
        template_body: template_body.unwrap_or(&settings.template_body).to_string(),
        parameters,
        capabilities: settings.capabilities.clone(),
        tags: stack.tags.clone(),
        auto_deployment: None,
        managed_execution: None,
    };
    let changes = settings_changes(desired, &as_set);
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Step {
        purpose: Purpose::Converge,
        summary: format!(
            "update stack {} in the management account ({})",
            stack.name,
            changes
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        changes,
        action: Action::UpdateStack {
            region: stack.region.clone(),
            settings,
        },
    }))
}

fn delete_step(stack: &ObservedStack, why: &str) -> Step {
    Step {
        purpose: Purpose::Converge,
        summary: format!(
            "delete stack {} from the management account in {} ({why})",
            stack.name, stack.region
        ),
        changes: vec![Change {
            field: "managementAccount.stack".into(),
            from: format!("{} in {}", stack.name, stack.region),
            to: "(absent)".into(),
        }],
        action: Action::DeleteStack {
            region: stack.region.clone(),
            stack_id: stack.stack_id.clone(),
        },
    }
}

#[cfg(test)]
#[path = "management_stack_tests.rs"]
mod tests;
