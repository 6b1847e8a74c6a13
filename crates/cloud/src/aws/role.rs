//! `spec.credentials`: the credentials of an assumed role, for the clients of a deployment that runs as it.
//!
//! The role is assumed from the daemon's own credentials (the STS client here is built from the base
//! configuration, never from the role's), kept until `REFRESH_AHEAD` before the session ends and then assumed
//! again. A failure is the mapped STS error (`sts:AssumeRole` named), so the deployment stalls with the role and
//! the missing permission rather than with an opaque dispatch failure.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};

use super::errors::Call;
use crate::error::Error;
use crate::{CallCounter, RoleToAssume};

/// A session is assumed again when less than this much of it is left (or a quarter of its length, when that is
/// shorter), so no call is signed with credentials about to expire.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

/// The provider name in the SDK's credential debug output.
const PROVIDER_NAME: &str = "stacksetd-assume-role";

#[derive(Debug)]
pub struct AssumedRole {
    /// Built from the daemon's own configuration: the role is never assumed from itself.
    sts: aws_sdk_sts::Client,
    role: RoleToAssume,
    calls: Arc<CallCounter>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl AssumedRole {
    pub fn new(sts: aws_sdk_sts::Client, role: RoleToAssume, calls: Arc<CallCounter>) -> Self {
        AssumedRole {
            sts,
            role,
            calls,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The session's credentials, assuming the role again when they are missing or about to expire. One
    /// AssumeRole at a time: concurrent callers wait for it and share the result.
    pub async fn credentials(&self) -> Result<Credentials, Error> {
        let mut cached = self.cached.lock().await;
        if let Some(credentials) = cached.as_ref()
            && fresh(credentials, self.role.duration, SystemTime::now())
        {
            return Ok(credentials.clone());
        }
        let call = Call::sts("AssumeRole");
        let answer = self
            .sts
            .assume_role()
            .role_arn(&self.role.role_arn)
            .role_session_name(&self.role.session_name)
            .set_external_id(self.role.external_id.clone())
            .duration_seconds(i32::try_from(self.role.duration.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await;
        let output = match super::settle(&self.calls, call, answer) {
            Ok(output) => output,
            Err(e) => {
                *cached = None;
                return Err(e);
            }
        };
        let Some(issued) = output.credentials else {
            return Err(super::errors::malformed(call, "Credentials"));
        };
        let expiry = SystemTime::try_from(issued.expiration).ok();
        let credentials = Credentials::new(
            issued.access_key_id,
            issued.secret_access_key,
            Some(issued.session_token),
            expiry,
            PROVIDER_NAME,
        );
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}

/// Whether a session still has more than the refresh margin left (no expiry: never refreshed by time).
fn fresh(credentials: &Credentials, length: Duration, now: SystemTime) -> bool {
    let ahead = REFRESH_AHEAD.min(length / 4);
    credentials
        .expiry()
        .is_none_or(|expiry| expiry.duration_since(now).is_ok_and(|left| left > ahead))
}

/// The SDK clients' credentials provider: the one session `AssumedRole` keeps (shared with the cloud, which
/// renews it before each pass).
#[derive(Debug)]
pub struct RoleProvider(pub Arc<AssumedRole>);

impl ProvideCredentials for RoleProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.0
                .credentials()
                .await
                .map_err(|e| CredentialsError::provider_error(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    /// The request STS receives carries the role, the session name, the ExternalId and the session length the
    /// deployment asked for (moto checks none of them, so only the request itself can show them). A request
    /// without them matches no rule, and the mock fails the test.
    #[tokio::test]
    async fn assume_role_sends_the_external_id_and_the_duration() {
        let role = RoleToAssume {
            role_arn: "arn:aws:iam::210987654321:role/StackSetsAdmin".into(),
            external_id: Some("vendor-7f3a".into()),
            session_name: "stacksetd-aimably".into(),
            duration: Duration::from_secs(1800),
        };
        let expected = role.clone();
        let rule = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(move |r| {
                r.role_arn() == Some(expected.role_arn.as_str())
                    && r.role_session_name() == Some(expected.session_name.as_str())
                    && r.external_id() == expected.external_id.as_deref()
                    && r.duration_seconds() == Some(1800)
            })
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(
                        aws_sdk_sts::types::Credentials::builder()
                            .access_key_id("ASIA")
                            .secret_access_key("secret")
                            .session_token("token")
                            .expiration(aws_smithy_types::DateTime::from(
                                SystemTime::now() + Duration::from_secs(1800),
                            ))
                            .build()
                            .expect("credentials"),
                    )
                    .build()
            });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[&rule]);
        let assumed = AssumedRole::new(sts, role, Arc::default());
        let credentials = assumed.credentials().await.expect("the request matched");
        assert_eq!(credentials.access_key_id(), "ASIA");
        assert_eq!(rule.num_calls(), 1);
    }

    fn expiring_in(seconds: u64, now: SystemTime) -> Credentials {
        Credentials::new(
            "AKIA",
            "secret",
            None,
            Some(now + Duration::from_secs(seconds)),
            "t",
        )
    }

    #[test]
    fn sessions_are_renewed_ahead_of_their_end() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(fresh(&expiring_in(3000, now), hour, now));
        assert!(fresh(&expiring_in(301, now), hour, now));
        assert!(!fresh(&expiring_in(299, now), hour, now));
        assert!(!fresh(&expiring_in(0, now), hour, now));
        // A 15-minute session is renewed with a quarter of it left, not 5 minutes.
        let short = Duration::from_secs(900);
        assert!(fresh(&expiring_in(230, now), short, now));
        assert!(!fresh(&expiring_in(220, now), short, now));
    }
}
