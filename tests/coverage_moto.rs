//! Target changes end to end: the same transitions as the simulator's coverage model (tests/controller_sim/
//! coverage_model.rs), on moto (or fakecloud with `scripts/test.sh --backend fakecloud`), through the stacksetd
//! binary. Both emulators delete a whole OU's subtree with it (AWS's documented rule) and keep one instance per
//! account and Region; moto runs each sequence under both answers to what AWS does not document (an instance
//! reached again through a child OU keeps its first OU, or is re-associated: `STACKSETD_MOTO_REASSOCIATE`, see
//! tests/moto/README.md); fakecloud re-associates.
//!
//! After every change, one `reconcile --once` must exit 0 with the instances exactly the desired truth (computed
//! here from the organization), `plan --detailed-exitcode` must then plan nothing, and no DELETE operation of the
//! change may have touched an (account, Region) that both the previous and the new desired state target (read
//! from the emulator's own operation results).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::*;

const OTHER_REGION: &str = "eu-west-1";

/// One desired state: OUs by name (or `ROOT`), an account filter over accounts picked by (OU name, index), and
/// Regions.
#[derive(Debug, Clone)]
struct Targets {
    ous: &'static [&'static str],
    filter: &'static str,
    accounts: &'static [(&'static str, usize)],
    regions: &'static [&'static str],
}

const fn targets(ous: &'static [&'static str]) -> Targets {
    Targets {
        ous,
        filter: "NONE",
        accounts: &[],
        regions: &[REGION],
    }
}

/// The sequence: each kind of target transition, one after another on one stack set (each starts from
/// the state the previous one left).
const SEQUENCE: &[(&str, Targets)] = &[
    ("the whole organization", targets(&["ROOT"])),
    (
        "ROOT narrowed to an OU with a child OU",
        targets(&["Engineering"]),
    ),
    (
        "a parent OU replaced by its child and another OU",
        targets(&["Platform", "Finance"]),
    ),
    (
        "the child replaced by its parent, with a DIFFERENCE filter",
        Targets {
            ous: &["Engineering", "Finance"],
            filter: "DIFFERENCE",
            accounts: &[("Engineering", 0), ("Platform", 0), ("Finance", 0)],
            regions: &[REGION],
        },
    ),
    (
        "the DIFFERENCE list shrunk",
        Targets {
            ous: &["Engineering", "Finance"],
            filter: "DIFFERENCE",
            accounts: &[("Engineering", 0)],
            regions: &[REGION],
        },
    ),
    (
        "the filter type changed to INTERSECTION",
        Targets {
            ous: &["Engineering", "Finance"],
            filter: "INTERSECTION",
            accounts: &[("Engineering", 0), ("Platform", 1), ("Finance", 1)],
            regions: &[REGION],
        },
    ),
    ("the filter removed", targets(&["Engineering", "Finance"])),
    (
        "a Region added",
        Targets {
            regions: &[REGION, OTHER_REGION],
            ..targets(&["Engineering", "Finance"])
        },
    ),
    (
        "ROOT in the other Region only",
        Targets {
            regions: &[OTHER_REGION],
            ..targets(&["ROOT"])
        },
    ),
    ("back to the first Region, one OU", targets(&["Finance"])),
];

impl Targets {
    fn ou_ids(&self, org: &Org) -> Vec<String> {
        self.ous
            .iter()
            .map(|name| match *name {
                "ROOT" => "ROOT".to_string(),
                name => org.ou(name).to_string(),
            })
            .collect()
    }

    fn listed(&self, org: &Org) -> Vec<String> {
        self.accounts
            .iter()
            .map(|(ou, i)| {
                org.accounts_by_ou[*ou]
                    .iter()
                    .nth(*i)
                    .unwrap_or_else(|| panic!("no account {i} directly in {ou}"))
                    .clone()
            })
            .collect()
    }

    /// The desired truth, from the organization alone: every (account, Region) the targets reach.
    fn truth(&self, org: &Org) -> BTreeSet<(String, String)> {
        let reached: BTreeSet<String> = self
            .ous
            .iter()
            .flat_map(|name| match *name {
                "ROOT" => org.member_accounts(),
                name => org.accounts_under(name),
            })
            .collect();
        let listed: BTreeSet<String> = self.listed(org).into_iter().collect();
        reached
            .into_iter()
            .filter(|a| match self.filter {
                "INTERSECTION" => listed.contains(a),
                "DIFFERENCE" => !listed.contains(a),
                _ => true,
            })
            .flat_map(|a| self.regions.iter().map(move |r| (a.clone(), r.to_string())))
            .collect()
    }

    fn write(&self, dir: &Path, org: &Org) -> std::path::PathBuf {
        let ous = self.ou_ids(org);
        let listed = self.listed(org);
        filtered_yaml(
            dir,
            &ous.iter().map(String::as_str).collect::<Vec<_>>(),
            &listed.iter().map(String::as_str).collect::<Vec<_>>(),
            self.filter,
            self.regions,
        )
    }
}

async fn transitions(server: MotoServer) {
    let org = build_org(
        &server,
        &OrgSpec {
            root_accounts: 2,
            ..OrgSpec::standard()
        },
    )
    .await;
    let client = cfn_client(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seen_operations = BTreeSet::new();
    let mut previous: Option<BTreeSet<(String, String)>> = None;
    for (what, targets) in SEQUENCE {
        let truth = targets.truth(&org);
        let desired = targets.write(dir.path(), &org);
        let mut command = stacksetd(&server);
        command
            .arg("--desired")
            .arg(&desired)
            .args(["reconcile", "--once"]);
        let output = run(command).await;
        assert_exit(&output, 0, &format!("reconcile --once: {what}"));
        let now = instances(&client, STACK_SET).await;
        assert_eq!(
            now,
            truth,
            "{what}: missing {:?}, extra {:?}",
            truth.difference(&now).collect::<Vec<_>>(),
            now.difference(&truth).collect::<Vec<_>>()
        );
        let deleted = deleted_since(&client, &mut seen_operations).await;
        if let Some(previous) = &previous {
            let kept: BTreeSet<_> = previous.intersection(&truth).cloned().collect();
            let touched: Vec<_> = deleted.intersection(&kept).collect();
            assert!(
                touched.is_empty(),
                "{what}: a DELETE operation touched instances both desired states keep: {touched:?}"
            );
        }
        let mut command = stacksetd(&server);
        command
            .arg("--desired")
            .arg(&desired)
            .args(["plan", "--detailed-exitcode"]);
        let output = run(command).await;
        assert_exit(&output, 0, &format!("plan after: {what}"));
        previous = Some(truth);
    }
}

/// Each instance keeps the OU it was first created through (moto's default).
#[tokio::test]
async fn target_transitions_keep_every_kept_instance_when_instances_keep_their_first_ou() {
    transitions(MotoServer::start()).await;
}

/// An instance reached again through a child OU moves to it (fakecloud's behaviour; moto with the switch).
#[tokio::test]
async fn target_transitions_keep_every_kept_instance_when_instances_are_reassociated() {
    transitions(MotoServer::start_with_env(&[(
        "STACKSETD_MOTO_REASSOCIATE",
        "1",
    )]))
    .await;
}
