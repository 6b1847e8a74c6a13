//! `spec.autoDeployment.dependsOn`: the stack sets whose automatic deployments must finish before this one's
//! (AWS's AutoDeployment.DependsOn, up to 10 stack set ARNs). An entry is another deployment's `metadata.name` in
//! the same file or a stack set ARN. Checked offline, before AWS would refuse it: at most 10, no duplicates, not
//! itself, automatic deployment on, names that exist, and no cycle through the file's deployments (an ARN of a
//! stack set the file manages counts as that deployment). At run time the pass resolves names to ARNs
//! (`controller::observe`).

use std::collections::{BTreeMap, HashMap};

use super::locate::Finding;
use super::model::Deployment;
use super::parse::Document;

/// AWS's limit on AutoDeployment.DependsOn.
pub const MAX_DEPENDENCIES: usize = 10;

const FIELD: &str = "spec.autoDeployment.dependsOn";

/// One entry, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency<'a> {
    /// Another deployment of the file, by `metadata.name`.
    Deployment(&'a str),
    /// A stack set ARN, with the stack set's name from it.
    Arn { arn: &'a str, stack_set: &'a str },
}

/// `arn:<partition>:cloudformation:<region>:<account>:stackset/<name>:<id>`, or a deployment name.
pub fn parse(entry: &str) -> Option<Dependency<'_>> {
    if let Some(rest) = entry.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, "cloudformation", region, account, resource] = parts.as_slice() else {
            return None;
        };
        let (name, id) = resource.strip_prefix("stackset/")?.split_once(':')?;
        let ok = partition.starts_with("aws")
            && !region.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !id.is_empty();
        return ok.then_some(Dependency::Arn {
            arn: entry,
            stack_set: name,
        });
    }
    let ok = !entry.is_empty()
        && entry
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(Dependency::Deployment(entry))
}

/// The rules of one document (`rules::check` calls this).
pub(crate) fn check_one(d: &Deployment, mut report: impl FnMut(&str, String)) {
    let auto = &d.spec.auto_deployment;
    if auto.depends_on.is_empty() {
        return;
    }
    if !auto.enabled {
        report(
            FIELD,
            "dependsOn orders automatic deployments, so it needs enabled: true; set autoDeployment.enabled: true \
             or drop dependsOn"
                .to_string(),
        );
    }
    if auto.depends_on.len() > MAX_DEPENDENCIES {
        report(
            FIELD,
            format!(
                "{} entries; AWS allows at most {MAX_DEPENDENCIES} stack sets in dependsOn",
                auto.depends_on.len()
            ),
        );
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in auto.depends_on.iter().enumerate() {
        let field = format!("{FIELD}[{i}]");
        if let Some(j) = first.insert(entry.as_str(), i) {
            report(
                &field,
                format!("`{entry}` is listed twice (first at {FIELD}[{j}]); remove one"),
            );
            continue;
        }
        match parse(entry) {
            None => report(
                &field,
                format!(
                    "`{entry}` is neither a deployment name of this file nor a stack set ARN \
                     (arn:aws:cloudformation:REGION:ACCOUNT:stackset/NAME:ID)"
                ),
            ),
            Some(Dependency::Deployment(name)) if name == d.metadata.name => report(
                &field,
                "a deployment cannot depend on itself; remove this entry".to_string(),
            ),
            Some(Dependency::Arn { stack_set, .. }) if stack_set == d.spec.stack_set_name => {
                report(
                    &field,
                    "this is the deployment's own stack set; a stack set cannot depend on itself"
                        .to_string(),
                )
            }
            Some(_) => {}
        }
    }
}

/// The rules across documents: names that exist, and no cycle.
pub(crate) fn check_all(documents: &[Document]) -> Vec<Finding> {
    let mut out = Vec::new();
    let by_name: BTreeMap<&str, usize> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (d.deployment.metadata.name.as_str(), i))
        .collect();
    let by_stack_set: BTreeMap<&str, usize> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| (d.deployment.spec.stack_set_name.as_str(), i))
        .collect();
    // Edges: document -> (entry index, document it depends on).
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); documents.len()];
    for (from, d) in documents.iter().enumerate() {
        for (i, entry) in d
            .deployment
            .spec
            .auto_deployment
            .depends_on
            .iter()
            .enumerate()
        {
            let to = match parse(entry) {
                Some(Dependency::Deployment(name)) => match by_name.get(name) {
                    Some(to) => Some(*to),
                    None => {
                        let field = format!("{FIELD}[{i}]");
                        out.push(Finding {
                            pos: d.layout.value_pos_of(&field),
                            field,
                            message: format!(
                                "no deployment named `{name}` in this file; write one of its deployments' \
                                 metadata.name, or the stack set's ARN for one stacksetd does not manage here"
                            ),
                        });
                        None
                    }
                },
                Some(Dependency::Arn { stack_set, .. }) => by_stack_set.get(stack_set).copied(),
                None => None,
            };
            if let Some(to) = to.filter(|to| *to != from) {
                edges[from].push((i, to));
            }
        }
    }
    // Depth-first search; each cycle is reported once, at the entry that closes it.
    let mut state = vec![0u8; documents.len()]; // 0 new, 1 on the path, 2 done
    let mut path: Vec<usize> = Vec::new();
    fn visit(
        at: usize,
        edges: &[Vec<(usize, usize)>],
        state: &mut [u8],
        path: &mut Vec<usize>,
        documents: &[Document],
        out: &mut Vec<Finding>,
    ) {
        state[at] = 1;
        path.push(at);
        for &(entry, to) in &edges[at] {
            match state[to] {
                0 => visit(to, edges, state, path, documents, out),
                1 => {
                    let start = path.iter().position(|p| *p == to).unwrap_or(0);
                    let names: Vec<&str> = path[start..]
                        .iter()
                        .chain(std::iter::once(&to))
                        .map(|i| documents[*i].deployment.metadata.name.as_str())
                        .collect();
                    let field = format!("{FIELD}[{entry}]");
                    out.push(Finding {
                        pos: documents[at].layout.value_pos_of(&field),
                        field,
                        message: format!(
                            "dependsOn makes a cycle ({}); AWS refuses circular dependencies: remove one of them",
                            names.join(" -> ")
                        ),
                    });
                }
                _ => {}
            }
        }
        path.pop();
        state[at] = 2;
    }
    for start in 0..documents.len() {
        if state[start] == 0 {
            visit(start, &edges, &mut state, &mut path, documents, &mut out);
        }
    }
    out
}

/// The stack set each name entry refers to (name -> stackSetName), for the pass to resolve to an ARN.
pub(crate) fn stack_sets_named(documents: &[Document]) -> BTreeMap<String, String> {
    documents
        .iter()
        .map(|d| {
            (
                d.deployment.metadata.name.clone(),
                d.deployment.spec.stack_set_name.clone(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_names_or_stack_set_arns() {
        assert_eq!(
            parse("network-baseline"),
            Some(Dependency::Deployment("network-baseline"))
        );
        assert_eq!(
            parse("arn:aws:cloudformation:us-east-1:111111111111:stackset/Baseline:1a2b-3c"),
            Some(Dependency::Arn {
                arn: "arn:aws:cloudformation:us-east-1:111111111111:stackset/Baseline:1a2b-3c",
                stack_set: "Baseline"
            })
        );
        for bad in [
            "",
            "Network",
            "arn:aws:cloudformation:us-east-1:111:stackset/Baseline:1",
            "arn:aws:s3:::bucket",
            "arn:aws:cloudformation:us-east-1:111111111111:stack/Baseline:1",
            "arn:aws:cloudformation:us-east-1:111111111111:stackset/Baseline",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod file_tests {
    use std::path::Path;

    fn doc(name: &str, stack_set: &str, depends_on: &str) -> String {
        format!(
            "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: {name}}}\nspec:\n  \
             stackSetName: {stack_set}\n  managementAccountId: \"111111111111\"\n  template: {{url: \"file:///t.json\"}}\n  \
             deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  regions: [us-east-1]\n  \
             autoDeployment: {{enabled: true, dependsOn: {depends_on}}}\n"
        )
    }

    fn problems(text: &str) -> Vec<String> {
        match crate::desired::parse_str(text, Path::new("d.yaml")) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems
                .iter()
                .map(|p| format!("{}:{} {}: {}", p.line, p.column, p.field, p.message))
                .collect(),
        }
    }

    #[test]
    fn a_dependency_by_name_resolves_to_its_stack_set() {
        let text = [
            doc("app", "App", "[network]"),
            doc("network", "Network", "[]"),
        ]
        .join("---\n");
        let deployments = crate::desired::parse_str(&text, Path::new("d.yaml")).unwrap();
        assert_eq!(
            deployments[0]
                .spec
                .dependency_stack_sets
                .get("network")
                .map(String::as_str),
            Some("Network")
        );
        assert!(deployments[1].spec.dependency_stack_sets.is_empty());
    }

    #[test]
    fn a_cycle_is_refused_at_the_entry_that_closes_it() {
        let text = [
            doc("a", "A", "[b]"),
            doc(
                "b",
                "B",
                "[\"arn:aws:cloudformation:us-east-1:111111111111:stackset/C:1\"]",
            ),
            doc("c", "C", "[a]"),
        ]
        .join("---\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].contains("spec.autoDeployment.dependsOn[0]"),
            "{found:#?}"
        );
        assert!(found[0].contains("a -> b -> c -> a"), "{found:#?}");
        // The line and column of the entry: in the third document, autoDeployment's list.
        assert!(found[0].starts_with("32:47 "), "{found:#?}");
    }

    #[test]
    fn every_other_rule_names_the_entry() {
        let cases = [
            ("[missing]", "no deployment named `missing`"),
            ("[app]", "cannot depend on itself"),
            (
                "[\"arn:aws:cloudformation:us-east-1:111111111111:stackset/App:1\"]",
                "own stack set",
            ),
            ("[Network]", "neither a deployment name"),
            ("[network, network]", "listed twice"),
        ];
        for (list, expected) in cases {
            let text = [doc("app", "App", list), doc("network", "Network", "[]")].join("---\n");
            let found = problems(&text);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{list}: {found:#?}"
            );
        }
        let eleven: Vec<String> = (0..11)
            .map(|i| format!("\"arn:aws:cloudformation:us-east-1:111111111111:stackset/S{i}:1\""))
            .collect();
        let found = problems(&doc("app", "App", &format!("[{}]", eleven.join(", "))));
        assert!(found.iter().any(|p| p.contains("at most 10")), "{found:#?}");
        let off = doc("app", "App", "[network]").replace("enabled: true", "enabled: false");
        let found = problems(&[off, doc("network", "Network", "[]")].join("---\n"));
        assert!(
            found.iter().any(|p| p.contains("needs enabled: true")),
            "{found:#?}"
        );
    }
}

/// dependsOn's cycle check against a reference on generated graphs (proptest, fixed seed and case count): a file
/// is refused for a cycle exactly when its dependency graph has one, whether edges are written as names or as
/// ARNs of the file's stack sets.
#[cfg(test)]
mod properties {
    use std::path::Path;

    use proptest::prelude::*;

    const CASES: u32 = 128;
    const SEED: u64 = 0xdeb5_0001;

    /// Whether the graph (edges from i to j) has a cycle, by repeatedly removing nodes without incoming edges.
    fn has_cycle(n: usize, edges: &[(usize, usize)]) -> bool {
        let mut alive = vec![true; n];
        loop {
            let sink = (0..n)
                .find(|&v| alive[v] && !edges.iter().any(|&(from, to)| from == v && alive[to]));
            match sink {
                Some(v) => alive[v] = false,
                None => return alive.iter().any(|a| *a),
            }
        }
    }

    fn file(n: usize, edges: &[(usize, usize)], by_arn: &[bool]) -> String {
        (0..n)
            .map(|i| {
                let deps: Vec<String> = edges
                    .iter()
                    .enumerate()
                    .filter(|(_, (from, _))| *from == i)
                    .map(|(k, (_, to))| {
                        if by_arn[k % by_arn.len()] {
                            format!("\"arn:aws:cloudformation:us-east-1:111111111111:stackset/S{to}:id\"")
                        } else {
                            format!("d{to}")
                        }
                    })
                    .collect();
                format!(
                    "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: d{i}}}\nspec:\n  \
                     stackSetName: S{i}\n  managementAccountId: \"111111111111\"\n  template: {{url: \"file:///t.json\"}}\n  \
                     deploymentTargets: {{organizationalUnitIds: [ROOT]}}\n  regions: [us-east-1]\n  \
                     autoDeployment: {{enabled: true, dependsOn: [{}]}}\n",
                    deps.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    #[test]
    fn a_file_is_refused_for_a_cycle_exactly_when_its_graph_has_one() {
        let mut runner = crate::fixtures::proptest_runner(CASES, SEED);
        let graph = (2usize..7).prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::btree_set((0..n, 0..n), 0..(n * 2))
                    .prop_map(|set| set.into_iter().filter(|(a, b)| a != b).collect::<Vec<_>>()),
                proptest::collection::vec(any::<bool>(), 1..4),
            )
        });
        runner
            .run(&graph, |(n, edges, by_arn)| {
                let text = file(n, &edges, &by_arn);
                let cycle_found = match crate::desired::parse_str(&text, Path::new("g.yaml")) {
                    Ok(_) => false,
                    Err(e) => {
                        let other: Vec<_> = e
                            .problems
                            .iter()
                            .filter(|p| !p.message.contains("makes a cycle"))
                            .collect();
                        prop_assert!(
                            other.is_empty(),
                            "only cycles may be refused: {other:#?}\n{text}"
                        );
                        true
                    }
                };
                prop_assert_eq!(cycle_found, has_cycle(n, &edges), "{}", text);
                Ok(())
            })
            .unwrap();
    }
}
