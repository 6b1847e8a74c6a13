//! Per-deployment credentials (`spec.credentials`): one [`Context`] per role, so one daemon serves many
//! organizations. A role's context acts through a cloud that runs every call as that role; its organization cache
//! and preflight results are its own (they describe what that identity sees), everything else is shared with the
//! daemon's context (`Context::with_cloud`). Deployments without `spec.credentials` use the daemon's own context.
//!
//! A role is assumed when a deployment first needs it and kept for as long as a deployment names it; before every
//! pass its session is renewed if it is about to end (`Cloud::refresh_credentials`: no call otherwise). A role
//! that cannot be assumed is a preflight failure naming the role and the permission, so the deployment is Stalled
//! with that reason, nothing is sent, and the next pass tries again.

use std::collections::HashMap;
use std::sync::Arc;

use super::Context;
use crate::cloud::{Connector, RoleToAssume};
use crate::desired::Deployment;
use crate::error::Error;

/// The metric label and preflight reason of a role that cannot be assumed.
pub const ASSUME_ROLE_FAILED: &str = "assume_role_failed";

pub struct Contexts {
    base: Arc<Context>,
    /// None where roles cannot be assumed (bare test clouds): a deployment with `spec.credentials` then fails
    /// closed with a clear error instead of running as the daemon's own identity.
    connector: Option<Arc<dyn Connector>>,
    roles: tokio::sync::Mutex<HashMap<RoleToAssume, Arc<Context>>>,
}

impl Contexts {
    pub fn new(base: Arc<Context>, connector: Option<Arc<dyn Connector>>) -> Contexts {
        Contexts {
            base,
            connector,
            roles: Default::default(),
        }
    }

    /// The daemon's own context (deployments without `spec.credentials`).
    pub fn base(&self) -> &Arc<Context> {
        &self.base
    }

    /// The context a deployment's pass runs in, its role's session renewed when about to end.
    pub async fn for_deployment(&self, deployment: &Deployment) -> Result<Arc<Context>, Error> {
        let Some(role) = RoleToAssume::of(deployment) else {
            return Ok(self.base.clone());
        };
        let failed = |error: Error| assume_failed(deployment, &role, &error);
        let Some(connector) = &self.connector else {
            return Err(failed(Error::Settings(
                "this cloud cannot assume roles".into(),
            )));
        };
        let known = self.roles.lock().await.get(&role).cloned();
        let ctx = match known {
            Some(ctx) => ctx,
            None => {
                // Assumed without the lock held: a slow STS for one role does not hold up the others' passes.
                // Two first passes at once may both assume it; the first context stored is the one kept.
                let cloud = connector.assume(&role).await.map_err(failed)?;
                let made = Arc::new(self.base.with_cloud(cloud));
                self.roles
                    .lock()
                    .await
                    .entry(role.clone())
                    .or_insert(made)
                    .clone()
            }
        };
        ctx.cloud.refresh_credentials().await.map_err(failed)?;
        Ok(ctx)
    }

    /// Forget the roles no deployment names any more (after a reload).
    pub async fn retain(&self, deployments: &[Arc<Deployment>]) {
        let named: Vec<RoleToAssume> = deployments
            .iter()
            .filter_map(|d| RoleToAssume::of(d))
            .collect();
        self.roles
            .lock()
            .await
            .retain(|role, _| named.contains(role));
    }

    /// The daemon's context and every role's connected so far.
    pub async fn all(&self) -> Vec<Arc<Context>> {
        let mut all = vec![self.base.clone()];
        all.extend(self.roles.lock().await.values().cloned());
        all
    }

    /// Every context's organization tree is out of date (SIGHUP).
    pub async fn invalidate_organizations(&self) {
        for ctx in self.all().await {
            ctx.invalidate_organization();
        }
    }
}

/// The role could not be assumed: say which, and what usually fixes it. The external id is never printed.
fn assume_failed(deployment: &Deployment, role: &RoleToAssume, error: &Error) -> Error {
    let external = if role.external_id.is_some() {
        " with the sts:ExternalId condition matching spec.credentials.externalId"
    } else {
        ""
    };
    Error::Preflight {
        reason: ASSUME_ROLE_FAILED,
        message: format!(
            "deployment {}: cannot assume spec.credentials.roleArn {} ({error}); nothing was changed. The \
             daemon's own identity needs sts:AssumeRole on that role, and the role's trust policy must allow \
             that identity{external}",
            deployment.name(),
            role.role_arn,
        ),
    }
}
