//! Plain stacks in the caller's own account: the management account's copy that `spec.managementAccount` keeps.
//! They follow CloudFormation's rules: work is asynchronous (one instance's duration), a name is taken while its
//! stack lives (AlreadyExistsException), a repeated ClientRequestToken is the same request, an update that
//! changes nothing is a ValidationError ("No updates are to be performed"), a stack being worked on cannot be
//! updated, a failed creation rolls back to ROLLBACK_COMPLETE and only DeleteStack moves it on, deleting a stack
//! that is gone succeeds, and DetectStackDrift reports what was changed behind CloudFormation's back.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::faults::SimError;
use super::{Sim, World};
use crate::error::AwsErrorKind;
use crate::{DeleteStackRequest, ObservedStack, StackRequest};

/// One stack, keyed in the world by (Region, name) while it lives.
#[derive(Debug, Clone)]
pub(crate) struct SimStack {
    pub id: String,
    pub name: String,
    pub region: String,
    pub status: String,
    pub reason: Option<String>,
    pub template: String,
    pub parameters: BTreeMap<String, String>,
    pub capabilities: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
    pub role_arn: Option<String>,
    pub created: Instant,
    pub updated: Option<Instant>,
    /// The work under way: when it ends and the status it ends in (DELETE_COMPLETE removes the stack).
    pub pending: Option<(Instant, &'static str)>,
    /// Its resources were changed behind CloudFormation's back.
    pub resource_drift: bool,
    pub drift_status: Option<String>,
    pub last_drift_check: Option<Instant>,
    /// Every ClientRequestToken this stack was sent.
    pub tokens: BTreeSet<String>,
}

/// The stacks and what tests steer them with.
#[derive(Debug, Default)]
pub(crate) struct Stacks {
    pub live: BTreeMap<(String, String), SimStack>,
    /// Creations fail with this reason and roll back (a template CloudFormation cannot deploy).
    pub failing_creations: Option<String>,
}

/// CloudFormation's ValidationError for an update that changes nothing.
pub(super) const NO_UPDATES: &str = "No updates are to be performed.";

fn no_such_stack(what: &str) -> SimError {
    SimError::validation(format!("Stack with id {what} does not exist"))
}

impl World {
    /// Ends the stack work due by now.
    pub(crate) fn settle_stacks(&mut self) {
        let now = self.now;
        self.stacks.live.retain(|_, stack| match stack.pending {
            Some((at, status)) if at <= now => {
                stack.pending = None;
                stack.status = status.to_string();
                status != "DELETE_COMPLETE"
            }
            _ => true,
        });
    }

    fn stack_by_id(&mut self, id: &str) -> Option<&mut SimStack> {
        self.stacks.live.values_mut().find(|s| s.id == id)
    }

    fn observe_stack(&self, stack: &SimStack) -> ObservedStack {
        ObservedStack {
            name: stack.name.clone(),
            region: stack.region.clone(),
            stack_id: stack.id.clone(),
            status: stack.status.clone(),
            status_reason: stack.reason.clone(),
            parameters: stack.parameters.clone(),
            capabilities: stack.capabilities.clone(),
            tags: stack.tags.clone(),
            last_changed: Some(self.wall_clock(stack.updated.unwrap_or(stack.created))),
            role_arn: stack.role_arn.clone(),
            drift_status: stack.drift_status.clone(),
            last_drift_check: stack.last_drift_check.map(|t| self.wall_clock(t)),
        }
    }

    pub(super) fn describe_stack(&self, name: &str, region: &str) -> Option<ObservedStack> {
        self.stacks
            .live
            .get(&(region.to_string(), name.to_string()))
            .map(|s| self.observe_stack(s))
    }

    pub(super) fn stack_template(&mut self, id: &str) -> Result<String, SimError> {
        self.stack_by_id(id)
            .map(|s| s.template.clone())
            .ok_or_else(|| no_such_stack(id))
    }

    pub(super) fn create_stack(&mut self, request: &StackRequest) -> Result<(), SimError> {
        let key = (request.region.clone(), request.name.clone());
        if let Some(existing) = self.stacks.live.get(&key) {
            if existing.tokens.contains(&request.client_token) {
                return Ok(());
            }
            return Err(SimError::new(
                AwsErrorKind::NameAlreadyExists,
                "AlreadyExistsException",
                format!("Stack [{}] already exists", request.name),
            ));
        }
        let body = self.template_of(request)?;
        check_capabilities(&body, &request.capabilities)?;
        let account = self.config.caller_account_id().to_string();
        let id = format!(
            "arn:aws:cloudformation:{}:{account}:stack/{}/{}",
            request.region,
            request.name,
            self.new_uuid()
        );
        let ends = self.now + self.config.instance_duration;
        let (status, reason) = match &self.stacks.failing_creations {
            Some(reason) => ("ROLLBACK_COMPLETE", Some(reason.clone())),
            None => ("CREATE_COMPLETE", None),
        };
        self.stacks.live.insert(
            key,
            SimStack {
                id,
                name: request.name.clone(),
                region: request.region.clone(),
                status: "CREATE_IN_PROGRESS".into(),
                reason,
                template: body,
                parameters: request.parameters.clone(),
                capabilities: request.capabilities.clone(),
                tags: request.tags.clone(),
                role_arn: request.role_arn.clone(),
                created: self.now,
                updated: None,
                pending: Some((ends, status)),
                resource_drift: false,
                drift_status: Some("NOT_CHECKED".into()),
                last_drift_check: None,
                tokens: BTreeSet::from([request.client_token.clone()]),
            },
        );
        Ok(())
    }

    pub(super) fn update_stack(&mut self, request: &StackRequest) -> Result<(), SimError> {
        let body = self.template_of(request)?;
        let now = self.now;
        let ends = now + self.config.instance_duration;
        let stack = self
            .stacks
            .live
            .get_mut(&(request.region.clone(), request.name.clone()))
            .ok_or_else(|| no_such_stack(&request.name))?;
        if stack.tokens.contains(&request.client_token) {
            return Ok(());
        }
        if !matches!(
            stack.status.as_str(),
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE"
        ) {
            return Err(SimError::validation(format!(
                "Stack:{} is in {} state and can not be updated.",
                stack.id, stack.status
            )));
        }
        if stack.template == body
            && stack.parameters == request.parameters
            && stack.tags == request.tags
        {
            return Err(SimError::validation(NO_UPDATES));
        }
        check_capabilities(&body, &request.capabilities)?;
        stack.template = body;
        stack.parameters = request.parameters.clone();
        stack.capabilities = request.capabilities.clone();
        stack.tags = request.tags.clone();
        stack.role_arn = request.role_arn.clone();
        stack.status = "UPDATE_IN_PROGRESS".into();
        stack.reason = None;
        stack.updated = Some(now);
        stack.pending = Some((ends, "UPDATE_COMPLETE"));
        stack.tokens.insert(request.client_token.clone());
        Ok(())
    }

    pub(super) fn delete_stack(&mut self, request: &DeleteStackRequest) -> Result<(), SimError> {
        let ends = self.now + self.config.instance_duration;
        let Some(stack) = self.stack_by_id(&request.stack_id) else {
            // CloudFormation answers a deletion of a stack that is gone with success.
            return Ok(());
        };
        if stack.status == "DELETE_IN_PROGRESS" {
            return Ok(());
        }
        if stack.pending.is_some() {
            return Err(SimError::validation(format!(
                "Stack [{}] cannot be deleted while in status {}",
                stack.name, stack.status
            )));
        }
        stack.status = "DELETE_IN_PROGRESS".into();
        stack.pending = Some((ends, "DELETE_COMPLETE"));
        stack.tokens.insert(request.client_token.clone());
        Ok(())
    }

    pub(super) fn detect_stack_drift(&mut self, id: &str) -> Result<(), SimError> {
        let now = self.now;
        let stack = self.stack_by_id(id).ok_or_else(|| no_such_stack(id))?;
        if stack.pending.is_some() {
            return Err(SimError::validation(format!(
                "Drift detection is not supported for a stack in status {}",
                stack.status
            )));
        }
        stack.drift_status = Some(
            if stack.resource_drift {
                "DRIFTED"
            } else {
                "IN_SYNC"
            }
            .into(),
        );
        stack.last_drift_check = Some(now);
        Ok(())
    }

    /// The body a request deploys: its own, or the staged object its URL names (the stack sets' rules and
    /// limits, `targets::template_of`).
    fn template_of(&self, request: &StackRequest) -> Result<String, SimError> {
        super::targets::template_of(
            &self.staged,
            Some(&request.template_body),
            request.template_url.as_deref(),
        )
        .map(|body| body.unwrap_or_default().to_string())
    }
}

/// CloudFormation refuses IAM resources without the capability that acknowledges them.
fn check_capabilities(body: &str, capabilities: &BTreeSet<String>) -> Result<(), SimError> {
    let iam = body.contains("AWS::IAM::");
    let acknowledged = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
        .iter()
        .any(|c| capabilities.contains(*c));
    if iam && !acknowledged {
        return Err(SimError::new(
            AwsErrorKind::Validation,
            "InsufficientCapabilitiesException",
            "Requires capabilities : [CAPABILITY_NAMED_IAM]",
        ));
    }
    Ok(())
}

/// What tests steer and inspect.
impl Sim {
    /// What DescribeStacks would answer for the stack, without counting a call.
    pub fn stack(&self, region: &str, name: &str) -> Option<ObservedStack> {
        self.world().describe_stack(name, region)
    }

    /// The stack's template body, without counting a call.
    pub fn stack_template_body(&self, region: &str, name: &str) -> Option<String> {
        self.world()
            .stacks
            .live
            .get(&(region.to_string(), name.to_string()))
            .map(|s| s.template.clone())
    }

    /// A stack made outside stacksetd (by hand, or by another tool), complete, with these tags.
    pub fn put_stack_outside(
        &self,
        region: &str,
        name: &str,
        template: &str,
        tags: BTreeMap<String, String>,
    ) {
        let mut world = self.world_changed();
        let request = StackRequest {
            name: name.into(),
            region: region.into(),
            template_body: template.into(),
            template_url: None,
            parameters: BTreeMap::new(),
            capabilities: BTreeSet::from(["CAPABILITY_NAMED_IAM".to_string()]),
            tags,
            role_arn: None,
            client_token: "outside".into(),
        };
        world
            .create_stack(&request)
            .expect("put_stack_outside: the name is free");
        world.settle_all_stacks();
    }

    /// Someone updates the stack outside stacksetd (a console edit): its template becomes `template`, the tags
    /// stay. Returns whether the stack exists.
    pub fn edit_stack_template(&self, region: &str, name: &str, template: &str) -> bool {
        let mut world = self.world_changed();
        let now = world.now;
        match world
            .stacks
            .live
            .get_mut(&(region.to_string(), name.to_string()))
        {
            Some(stack) => {
                stack.template = template.to_string();
                stack.status = "UPDATE_COMPLETE".into();
                stack.updated = Some(now);
                true
            }
            None => false,
        }
    }

    /// Changes the stack's resources behind CloudFormation's back: the next DetectStackDrift reports DRIFTED.
    pub fn drift_stack(&self, region: &str, name: &str) -> bool {
        let mut world = self.world_changed();
        match world
            .stacks
            .live
            .get_mut(&(region.to_string(), name.to_string()))
        {
            Some(stack) => {
                stack.resource_drift = true;
                true
            }
            None => false,
        }
    }

    /// From now on stack creations fail with `reason` and roll back (`None`: they succeed again).
    pub fn fail_stack_creations(&self, reason: Option<&str>) {
        self.world_changed().stacks.failing_creations = reason.map(str::to_string);
    }
}

impl World {
    /// Ends every stack's work now (a stack made outside the API is complete when the test continues).
    fn settle_all_stacks(&mut self) {
        for stack in self.stacks.live.values_mut() {
            if let Some((_, status)) = stack.pending.take() {
                stack.status = status.to_string();
            }
        }
    }
}
