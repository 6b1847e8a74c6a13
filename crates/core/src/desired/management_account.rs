//! The offline rules of `spec.managementAccount` (the plain stack stacksetd keeps in the management account).

use super::credentials::role_account;
use super::model::{CallAs, Spec};

/// Every finding on `spec.managementAccount`: a delegated administrator cannot reach the management account's
/// stacks, and the service role must be a role of the management account.
pub fn check(spec: &Spec, mut report: impl FnMut(&str, String)) {
    let Some(management) = &spec.management_account else {
        return;
    };
    if management.deploy && spec.call_as == CallAs::DelegatedAdmin {
        report(
            "spec.managementAccount.deploy",
            "deploy: true needs callAs: SELF: the stack lives in the management account, and a delegated \
             administrator's credentials cannot create stacks there; run this deployment with the management \
             account's credentials (callAs: SELF, or spec.credentials with a role there), or drop the field"
                .into(),
        );
    }
    if let Some(arn) = &management.service_role_arn {
        match role_account(arn) {
            None => report(
                "spec.managementAccount.serviceRoleArn",
                format!(
                    "`{arn}` is not an IAM role ARN: write arn:aws:iam::<12-digit account>:role/<name> (the \
                     CloudFormation service role the stack's changes run as)"
                ),
            ),
            Some(account) if account != spec.management_account_id => report(
                "spec.managementAccount.serviceRoleArn",
                format!(
                    "the role is in account {account}, but CloudFormation only passes a role of the stack's own \
                     account, the management account {}: name a role there",
                    spec.management_account_id
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::DeploymentYaml;

    fn findings(lines: &str) -> String {
        let yaml = DeploymentYaml::new()
            .targets(&["ROOT"], &["us-east-1"])
            .spec(lines)
            .yaml();
        match crate::desired::parse_str(&yaml, std::path::Path::new("t.yaml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn deploy_with_the_management_accounts_own_credentials_is_accepted() {
        assert_eq!(findings("  managementAccount: {deploy: true}\n"), "");
        assert_eq!(findings("  managementAccount: {deploy: false}\n"), "");
        assert_eq!(
            findings(
                "  managementAccount:\n    deploy: true\n    serviceRoleArn: \
                 arn:aws:iam::111111111111:role/cfn/StackSetdExecution\n"
            ),
            ""
        );
    }

    #[test]
    fn a_delegated_administrator_cannot_keep_a_stack_in_the_management_account() {
        let text = findings("  callAs: DELEGATED_ADMIN\n  managementAccount: {deploy: true}\n");
        assert!(text.contains("t.yaml:"), "{text}");
        assert!(text.contains("spec.managementAccount.deploy"), "{text}");
        assert!(text.contains("callAs: SELF"), "{text}");
        // deploy: false asks for nothing there.
        assert_eq!(
            findings("  callAs: DELEGATED_ADMIN\n  managementAccount: {deploy: false}\n"),
            ""
        );
    }

    #[test]
    fn the_service_role_must_be_a_role_of_the_management_account() {
        let text = findings(
            "  managementAccount: {deploy: true, serviceRoleArn: \"arn:aws:iam::222222222222:role/x\"}\n",
        );
        assert!(
            text.contains("spec.managementAccount.serviceRoleArn"),
            "{text}"
        );
        assert!(text.contains("111111111111"), "{text}");
        let text = findings(
            "  managementAccount: {deploy: true, serviceRoleArn: \"StackSetdExecution\"}\n",
        );
        assert!(text.contains("not an IAM role ARN"), "{text}");
        let text = findings("  managementAccount: {deploy: true, roleArn: x}\n");
        assert!(text.contains("roleArn"), "unknown keys are refused: {text}");
    }
}
