//! `stacksetd status --tree`: the page's organization tree in the terminal. The same states, counts, held
//! version and pending steps as `GET /`; coloured in a terminal, plain when piped; `--state missing,failed`
//! keeps only those accounts (and the OUs on the way to them). Every string came from AWS, a template or the
//! daemon, so each is escaped ([`crate::cli::output::safe`]).

use crate::accounts::{AccountState, OrganizationView, UnitView};
use crate::cli::output::safe;
use crate::cli::status_view::StatusDocument;
use crate::status::DeploymentStatus;

/// How the tree is printed.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// ANSI colours (a terminal).
    pub color: bool,
    /// Only accounts in these states (all when empty).
    pub states: Vec<AccountState>,
}

/// `--state`'s value: comma-separated state names, each checked.
pub fn parse_states(text: &str) -> Result<Vec<AccountState>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            AccountState::parse(s).ok_or_else(|| {
                let known: Vec<&str> = AccountState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; the states are {}", known.join(", "))
            })
        })
        .collect()
}

fn paint(state: AccountState) -> &'static str {
    match state {
        AccountState::Current => "\x1b[32m",
        AccountState::Missing => "\x1b[1;31m",
        AccountState::Failed => "\x1b[35m",
        AccountState::AccessFailed => "\x1b[31m",
        AccountState::Outdated => "\x1b[33m",
        AccountState::Management => "\x1b[34m",
        AccountState::Inactive | AccountState::Excluded | AccountState::Outside => "\x1b[2m",
    }
}

const RESET: &str = "\x1b[0m";

pub fn text(doc: &StatusDocument, options: &TreeOptions) -> String {
    let mut out = String::new();
    if doc.deployments.is_empty() {
        out.push_str("no deployments\n");
    }
    for (name, d) in &doc.deployments {
        deployment(&mut out, name, d, options);
    }
    out
}

fn deployment(out: &mut String, name: &str, d: &DeploymentStatus, options: &TreeOptions) {
    out.push_str(&format!(
        "deployment {} (stack set {}): {}\n",
        safe(name),
        safe(&d.stack_set_name),
        safe(&crate::page::state_line(d))
    ));
    if let Some(t) = &d.template {
        out.push_str(&format!(
            "  template sha256:{} ({}): {}\n",
            safe(&t.sha256),
            safe(&t.policy),
            safe(&t.decision)
        ));
        if t.update_available {
            out.push_str(&format!("  held: {}\n", safe(&t.message)));
            for line in &t.iam_diff {
                out.push_str(&format!("    {}\n", safe(line)));
            }
            out.push_str(&format!(
                "  to apply it, pin template.sha256: {}\n",
                safe(&t.sha256)
            ));
        }
    }
    let Some(observed) = &d.observed else {
        out.push_str("  not observed yet\n");
        return;
    };
    for p in &observed.pending_deletions {
        out.push_str(&format!(
            "  pending: {} ({}) runs at {}\n",
            p.action,
            safe(&p.summary),
            safe(&p.runs_at)
        ));
    }
    for line in &observed.pending {
        out.push_str(&format!("  pending: {}\n", safe(line)));
    }
    let Some(org) = &observed.organization else {
        out.push_str("  the organization has not been observed yet\n");
        return;
    };
    // The access check's failures are already on the states (`DeploymentStatus::overlay_access`).
    let blocked = format!(
        "blocked accounts (the vendor cannot read them: missing an instance, access failed, or failed): {}",
        org.blocked()
    );
    let blocked = match (options.color, org.blocked()) {
        (true, 0) => format!("\x1b[32m{blocked}{RESET}"),
        (true, _) => format!("\x1b[1;31m{blocked}{RESET}"),
        (false, _) => blocked,
    };
    out.push_str(&format!("  {blocked}\n"));
    out.push_str(&format!("  {}\n", counts(org, options)));
    let root = &org.root;
    out.push_str(&format!("  {}\n", unit_label(root)));
    children(out, root, "  ", options, 0);
}

fn counts(org: &OrganizationView, options: &TreeOptions) -> String {
    AccountState::ALL
        .iter()
        .map(|s| {
            let n = org.counts.get(s.as_str()).copied().unwrap_or(0);
            let label = format!("{} {n}", s.as_str());
            if options.color && n > 0 {
                format!("{}{label}{RESET}", paint(*s))
            } else {
                label
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn unit_label(u: &UnitView) -> String {
    if u.name.is_empty() || u.name == u.id {
        safe(&u.id).to_string()
    } else {
        format!("{} ({})", safe(&u.name), safe(&u.id))
    }
}

/// Deeper than Organizations allows: a malformed document stops here.
const MAX_DEPTH: usize = 16;

fn children(out: &mut String, u: &UnitView, prefix: &str, options: &TreeOptions, depth: usize) {
    let keep = |states: &[AccountState], s: AccountState| states.is_empty() || states.contains(&s);
    let accounts: Vec<_> = u
        .accounts
        .iter()
        .filter(|a| keep(&options.states, a.state))
        .collect();
    let units: Vec<_> = if depth < MAX_DEPTH {
        u.units
            .iter()
            .filter(|c| options.states.is_empty() || c.has_any(&options.states))
            .collect()
    } else {
        Vec::new()
    };
    let total = accounts.len() + units.len();
    let mut index = 0;
    for a in accounts {
        index += 1;
        let last = index == total;
        let state = if options.color {
            format!("{}[{}]{RESET}", paint(a.state), a.state.as_str())
        } else {
            format!("[{}]", a.state.as_str())
        };
        let reason = a
            .reason
            .as_deref()
            .map(|r| format!(": {}", safe(r)))
            .unwrap_or_default();
        out.push_str(&format!(
            "{prefix}{}{state} {} {}{reason}\n",
            if last { "└── " } else { "├── " },
            safe(&a.name),
            safe(&a.id)
        ));
    }
    for c in units {
        index += 1;
        let last = index == total;
        out.push_str(&format!(
            "{prefix}{}{}\n",
            if last { "└── " } else { "├── " },
            unit_label(c)
        ));
        let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
        children(out, c, &deeper, options, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::accounts::AccountView;
    use crate::cli::status_view::Source;
    use crate::controller::Report;

    fn account(id: &str, name: &str, state: AccountState, reason: Option<&str>) -> AccountView {
        AccountView {
            id: id.into(),
            name: name.into(),
            state,
            reason: reason.map(str::to_string),
        }
    }

    fn doc() -> StatusDocument {
        let mut org = OrganizationView {
            root: UnitView {
                id: "r-abcd".into(),
                name: "Root".into(),
                accounts: vec![account(
                    "111111111111",
                    "management",
                    AccountState::Management,
                    None,
                )],
                units: vec![
                    UnitView {
                        id: "ou-abcd-prod0001".into(),
                        name: "Prod".into(),
                        accounts: vec![
                            account("200000000001", "prod-a", AccountState::Current, None),
                            account(
                                "200000000002",
                                "prod-b\u{1b}[2J",
                                AccountState::Failed,
                                Some("Role exists\nforged line"),
                            ),
                        ],
                        units: vec![],
                    },
                    UnitView {
                        id: "ou-abcd-sand0001".into(),
                        name: "Sandbox".into(),
                        accounts: vec![account(
                            "300000000001",
                            "sandbox",
                            AccountState::Missing,
                            Some("no instance in us-east-1"),
                        )],
                        units: vec![],
                    },
                ],
            },
            counts: BTreeMap::new(),
        };
        // Counts as the pass computes them.
        org.overlay_access_failures(&BTreeMap::from([(
            "200000000001".into(),
            "access check: access_denied".into(),
        )]));
        let status = DeploymentStatus {
            stack_set_name: "Vendor".into(),
            observed: Some(Report {
                organization: Some(org),
                ..Report::default()
            }),
            ..DeploymentStatus::default()
        };
        StatusDocument {
            source: Source::Daemon,
            daemon: None,
            desired_state: None,
            events: None,
            deployments: BTreeMap::from([("vendor".to_string(), status)]),
        }
    }

    #[test]
    fn piped_the_tree_is_plain_and_every_account_is_under_its_ou() {
        let text = text(&doc(), &TreeOptions::default());
        assert!(
            !text.contains('\u{1b}'),
            "no escape sequence when piped:\n{text}"
        );
        let expected = [
            "  Root (r-abcd)",
            "  ├── [management] management 111111111111",
            "  ├── Prod (ou-abcd-prod0001)",
            "  │   ├── [access-failed] prod-a 200000000001: access check: access_denied",
            "  │   └── [failed] prod-b\\u{001b}[2J 200000000002: Role exists\\u{000a}forged line",
            "  └── Sandbox (ou-abcd-sand0001)",
            "      └── [missing] sandbox 300000000001: no instance in us-east-1",
        ]
        .join("\n");
        assert!(text.contains(&expected), "{text}");
        assert!(
            text.contains("failed 1, missing 1, access-failed 1, outdated 0, current 0"),
            "{text}"
        );
        assert!(
            text.contains("  blocked accounts (the vendor cannot read them: missing an instance, access failed, or failed): 3\n"),
            "{text}"
        );
    }

    #[test]
    fn a_coverage_gap_is_the_headline_never_converged() {
        let mut doc = doc();
        let status = doc.deployments.get_mut("vendor").unwrap();
        status.conditions = vec![crate::status::Condition {
            kind: "Ready".into(),
            status: "False".into(),
            reason: "CoverageGap".into(),
            message: "1 targeted account x Region slot(s) without an instance".into(),
            ..Default::default()
        }];
        let text = text(&doc, &TreeOptions::default());
        assert!(
            text.starts_with(
                "deployment vendor (stack set Vendor): Coverage gap: 1 targeted account x Region slot(s) without an \
                 instance\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Converged"), "{text}");
    }

    #[test]
    fn in_a_terminal_states_are_coloured_and_a_filter_keeps_the_ous_on_the_way() {
        let options = TreeOptions {
            color: true,
            states: parse_states("missing").unwrap(),
        };
        let text = text(&doc(), &options);
        assert!(
            text.contains("\x1b[1;31m[missing]\x1b[0m sandbox"),
            "{text}"
        );
        assert!(
            !text.contains("prod-a") && !text.contains("Prod ("),
            "{text}"
        );
        assert!(text.contains("Sandbox (ou-abcd-sand0001)"), "{text}");
        let err = parse_states("missing,blocked").unwrap_err();
        assert!(
            err.contains("\"blocked\"") && err.contains("access-failed"),
            "{err}"
        );
    }
}
