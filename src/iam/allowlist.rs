//! What each policy level may grant, whatever the vendor publishes.
//!
//! The diff asks "more than before?"; this asks "more than the customer signed up for?". A DataOnly deployment
//! must never install a role that can change anything, even if every earlier version was already wrong, so the
//! check looks at the whole candidate, not at the change. It is an allowlist: anything not named here -
//! `iam:*`, `s3:Put*`, `ec2:Terminate*`, `*`, `sts:AssumeRole` to other roles, an action computed by an
//! intrinsic - is refused with the statement that grants it.

use serde_json::Value;

use super::extract::{Effect, grants};
use super::pattern::{Item, Kind, Term, term_covers};
use crate::desired::PolicyLevel;

/// Metadata reads of the cost, inventory and monitoring services the vendor needs. Deliberately not a blanket
/// `Get*`/`List*` per service: `s3:GetObject`, `dynamodb:GetItem`, `ec2:GetPasswordData`,
/// `redshift:GetClusterCredentials`, `secretsmanager:GetSecretValue` are all "reads" that expose customer data or
/// credentials.
const DATA_ONLY: &[&str] = &[
    // cost and billing
    "ce:Describe*",
    "ce:Get*",
    "ce:List*",
    "cur:Describe*",
    "cur:Get*",
    "budgets:Describe*",
    "budgets:View*",
    "savingsplans:Describe*",
    "savingsplans:List*",
    "pricing:Describe*",
    "pricing:Get*",
    "pricing:List*",
    "compute-optimizer:Describe*",
    "compute-optimizer:Get*",
    "trustedadvisor:Describe*",
    "trustedadvisor:List*",
    "support:DescribeTrustedAdvisor*",
    "organizations:Describe*",
    "organizations:List*",
    // inventory
    "ec2:Describe*",
    "rds:Describe*",
    "rds:ListTagsForResource",
    "autoscaling:Describe*",
    "elasticloadbalancing:Describe*",
    "elasticache:Describe*",
    "redshift:Describe*",
    "ecs:Describe*",
    "ecs:List*",
    "lambda:GetAccountSettings",
    "lambda:List*",
    "s3:GetBucketLocation",
    "s3:GetBucketTagging",
    "s3:ListAllMyBuckets",
    "dynamodb:DescribeTable",
    "dynamodb:ListTables",
    "tag:GetResources",
    "tag:GetTagKeys",
    "tag:GetTagValues",
    // monitoring
    "cloudwatch:Describe*",
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
];

/// Start/stop style actions a scheduler needs, on top of [`DATA_ONLY`]. Exact names only: `ec2:Stop*` is refused
/// as unverifiable rather than guessed at.
const SCHEDULING: &[&str] = &[
    "ec2:StartInstances",
    "ec2:StopInstances",
    "rds:StartDBInstance",
    "rds:StopDBInstance",
    "rds:StartDBCluster",
    "rds:StopDBCluster",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:SuspendProcesses",
    "autoscaling:ResumeProcesses",
    "ecs:UpdateService",
];

/// What a trust policy may let its principals do: assume the role, with session tags and source identity.
const TRUST_ACTIONS: &[&str] = &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Offense {
    /// e.g. `Resources.AimablyMemberRole.Properties.Policies[0].PolicyDocument.Statement[2]`
    pub location: String,
    pub action: String,
    pub reason: String,
}

fn allowed_patterns(level: PolicyLevel) -> Vec<&'static str> {
    match level {
        PolicyLevel::DataOnly => DATA_ONLY.to_vec(),
        PolicyLevel::DataAndScheduling => DATA_ONLY.iter().chain(SCHEDULING).copied().collect(),
    }
}

fn listed(patterns: &[&str], action: &Term) -> bool {
    patterns
        .iter()
        .any(|p| term_covers(Kind::Action, &Term::Literal((*p).to_string()), action))
}

/// Each policy level's allowlist: DataOnly may only read (Describe*/Get*/List*/View*/… of cost, inventory and
/// monitoring services); DataAndScheduling adds start/stop style scheduling actions. Anything else is an offense.
/// Deny statements never offend. Managed policy ARNs always do: their content is not in the template, so it
/// cannot be checked.
pub fn check_allowlist(level: PolicyLevel, template: &Value) -> Vec<Offense> {
    let g = grants(template);
    let patterns = allowed_patterns(level);
    let level_name = level.as_str();
    let mut out = Vec::new();
    let mut offend = |location: &str, action: String, reason: String| {
        out.push(Offense {
            location: location.to_string(),
            action,
            reason,
        })
    };
    for s in g.statements.iter().filter(|s| s.effect == Effect::Allow) {
        let (list, what): (&[&str], String) = if s.trust {
            (TRUST_ACTIONS, "a trust policy".to_string())
        } else {
            (&patterns, format!("the {level_name} allowlist"))
        };
        for item in &s.actions {
            match item {
                Item::One(term @ Term::Literal(_)) if listed(list, term) => {}
                Item::One(term @ Term::Literal(_)) => offend(
                    &s.location,
                    term.display().to_string(),
                    format!("{} is not in {what}", term.display()),
                ),
                Item::One(term @ Term::Intrinsic(_)) => offend(
                    &s.location,
                    term.display().to_string(),
                    "an action computed by an intrinsic function cannot be checked".to_string(),
                ),
                Item::AllExcept(_) => offend(
                    &s.location,
                    item.display(Kind::Action),
                    "Allow with NotAction grants every action not listed".to_string(),
                ),
            }
        }
        if s.trust {
            for principal in &s.principals {
                let anyone = match principal {
                    Item::One(Term::Literal(p)) => p == "*",
                    Item::One(Term::Intrinsic(_)) => false,
                    Item::AllExcept(_) => true,
                };
                if anyone {
                    offend(
                        &s.location,
                        s.actions
                            .first()
                            .map(|a| a.display(Kind::Action))
                            .unwrap_or_default(),
                        format!(
                            "the trust policy lets anyone ({}) assume the role",
                            principal.display(Kind::Principal)
                        ),
                    );
                }
            }
        }
    }
    for arn in &g.managed_policy_arns {
        offend(
            &arn.location,
            arn.arn.display().to_string(),
            format!(
                "managed policy {} cannot be checked against the {level_name} allowlist",
                arn.arn.display()
            ),
        );
    }
    for fragment in &g.opaque {
        offend(
            &fragment.location,
            "(not interpretable)".to_string(),
            format!(
                "policy not interpretable, so it cannot be checked: {}",
                fragment.text
            ),
        );
    }
    out
}
