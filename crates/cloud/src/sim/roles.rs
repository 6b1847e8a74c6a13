//! `spec.credentials` in the simulator: roles that lead into other simulated organizations, so one daemon's
//! deployments can act on several organizations in a test, each through its own role (as moto's multi-account
//! STS does end to end).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::Sim;
use crate::error::{AwsErrorKind, Error};
use crate::{Cloud, Connector, Result, RoleToAssume};

/// Role ARN -> the organization it leads into and the external id its trust policy requires.
type Trusts = HashMap<String, (Sim, Option<String>)>;

/// The roles the daemon's own identity may assume, each into a simulated organization.
#[derive(Default, Clone)]
pub struct SimRoles {
    roles: Arc<Mutex<Trusts>>,
    assumed: Arc<Mutex<Vec<String>>>,
}

impl SimRoles {
    /// `role_arn` may be assumed and acts in `sim`'s organization; with `external_id`, only with that id.
    pub fn allow(&self, role_arn: &str, sim: &Sim, external_id: Option<&str>) {
        self.roles.lock().expect("sim roles poisoned").insert(
            role_arn.to_string(),
            (sim.clone(), external_id.map(str::to_string)),
        );
    }

    /// Every AssumeRole that succeeded, in order (role ARNs).
    pub fn assumed(&self) -> Vec<String> {
        self.assumed.lock().expect("sim roles poisoned").clone()
    }
}

#[async_trait]
impl Connector for SimRoles {
    async fn assume(&self, role: &RoleToAssume) -> Result<Arc<dyn Cloud>> {
        let found = self
            .roles
            .lock()
            .expect("sim roles poisoned")
            .get(&role.role_arn)
            .cloned();
        let denied = |why: &str| Error::Aws {
            service: "sts",
            operation: "AssumeRole",
            kind: AwsErrorKind::AccessDenied,
            code: "AccessDenied".into(),
            message: format!(
                "User: arn:aws:iam::000000000000:user/stacksetd is not authorized to perform: sts:AssumeRole on \
                 resource: {} ({why})",
                role.role_arn
            ),
        };
        match found {
            None => Err(denied("no trust policy allows it")),
            Some((_, Some(wanted))) if role.external_id.as_deref() != Some(wanted.as_str()) => Err(
                denied("the trust policy's sts:ExternalId condition does not match"),
            ),
            Some((sim, _)) => {
                self.assumed
                    .lock()
                    .expect("sim roles poisoned")
                    .push(role.role_arn.clone());
                Ok(Arc::new(sim))
            }
        }
    }
}
