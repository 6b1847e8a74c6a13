//! The action catalog: every IAM action of the AWS Service Authorization Reference with its access level and
//! whether it supports resource-level permissions (data/aws-actions.tsv, refreshed by
//! scripts/refresh-action-catalog.py), and the reads that leak secrets or customer data despite a Read or List
//! level (data/leaky-reads.tsv, hand-curated). Both files are compiled in, so judging needs no network.
//!
//! The guard uses the catalog to expand wildcards exactly (`ec2:Describe*` is these 180 actions today), to name
//! the access level of each added action in a finding, and to flag actions AWS does not know (a typo, or newer
//! than the catalog): those are judged by their name, never waved through.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::pattern::glob_covers;

const ACTIONS_TSV: &str = include_str!("../../data/aws-actions.tsv");
const LEAKY_TSV: &str = include_str!("../../data/leaky-reads.tsv");

/// The SAR's access levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Level {
    List,
    Read,
    Write,
    #[serde(rename = "Permissions management")]
    PermissionsManagement,
    Tagging,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::List => "List",
            Level::Read => "Read",
            Level::Write => "Write",
            Level::PermissionsManagement => "Permissions management",
            Level::Tagging => "Tagging",
        }
    }

    /// List and Read: what a read-only policy level may grant.
    pub fn is_read(self) -> bool {
        matches!(self, Level::List | Level::Read)
    }

    fn from_code(c: char) -> Option<Level> {
        Some(match c {
            'L' => Level::List,
            'R' => Level::Read,
            'W' => Level::Write,
            'P' => Level::PermissionsManagement,
            'T' => Level::Tagging,
            _ => return None,
        })
    }

    /// What an action's name suggests, for actions the catalog does not know: only the read verbs count as reads.
    pub fn guess(action: &str) -> Level {
        let name = action.split_once(':').map_or(action, |(_, a)| a);
        const READ_VERBS: &[&str] = &[
            "Describe", "Get", "List", "View", "Search", "Lookup", "BatchGet", "Query",
        ];
        // `get`, not a byte slice: a name with a non-ASCII letter (a look-alike) must not panic here.
        if READ_VERBS.iter().any(|v| {
            name.get(..v.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(v))
                && name[v.len()..].starts_with(|c: char| c.is_ascii_uppercase() || c == '*')
        }) {
            Level::Read
        } else {
            Level::Write
        }
    }
}

#[derive(Debug)]
pub struct Action {
    /// `service:Action` in the SAR's casing.
    pub name: String,
    pub level: Level,
    /// Has at least one resource type other than `*`: a statement can scope it to ARNs.
    pub resource_scoped: bool,
}

#[derive(Debug)]
pub struct Catalog {
    /// Lowercase service prefix -> its actions.
    services: HashMap<String, Vec<Action>>,
    /// Lowercase `service:action` -> (service, index).
    by_name: HashMap<String, (String, usize)>,
    leaky: HashMap<String, &'static str>,
    /// The header line naming the source, for messages.
    pub source: &'static str,
}

/// What a pattern matches in the catalog.
#[derive(Debug, Default)]
pub struct Expansion<'a> {
    pub actions: Vec<&'a Action>,
    /// The pattern's service is not in the catalog (or it is not `service:action` at all).
    pub unknown_service: bool,
}

impl Catalog {
    pub fn get() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::parse(ACTIONS_TSV, LEAKY_TSV))
    }

    fn parse(actions: &'static str, leaky: &'static str) -> Catalog {
        let mut services: HashMap<String, Vec<Action>> = HashMap::new();
        let mut by_name = HashMap::new();
        let mut source = "the AWS Service Authorization Reference";
        for line in actions.lines() {
            if let Some(comment) = line.strip_prefix('#') {
                if comment.trim_start().starts_with("as packaged by") {
                    source = comment.trim();
                }
                continue;
            }
            let mut fields = line.split('\t');
            let Some(prefix) = fields.next().filter(|p| !p.is_empty()) else {
                continue;
            };
            let key = prefix.to_lowercase();
            let list = services.entry(key.clone()).or_default();
            for field in fields {
                let Some((name, code)) = field.rsplit_once(':') else {
                    continue;
                };
                let mut chars = code.chars();
                let Some(level) = chars.next().and_then(Level::from_code) else {
                    continue;
                };
                let full = format!("{prefix}:{name}");
                by_name.insert(full.to_lowercase(), (key.clone(), list.len()));
                list.push(Action {
                    name: full,
                    level,
                    resource_scoped: chars.next() == Some('*'),
                });
            }
        }
        let leaky = leaky
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.split_once('\t'))
            .map(|(action, what)| (action.to_lowercase(), what.trim()))
            .collect();
        Catalog {
            services,
            by_name,
            leaky,
            source,
        }
    }

    /// The catalog's entry for an exact action name (case-insensitive).
    pub fn action(&self, name: &str) -> Option<&Action> {
        let (service, index) = self.by_name.get(&name.to_lowercase())?;
        self.services.get(service)?.get(*index)
    }

    /// What a leaky read returns, when `name` is one.
    pub fn leaks(&self, name: &str) -> Option<&'static str> {
        self.leaky.get(&name.to_lowercase()).copied()
    }

    /// Every catalog action `pattern` matches (IAM wildcards, case-insensitive). `steps` counts the work.
    pub fn expand(&self, pattern: &str, steps: &mut u64) -> Expansion<'_> {
        let lower = pattern.to_lowercase();
        let Some((service, _)) = lower.split_once(':') else {
            if lower == "*" {
                let actions = self.services.values().flatten().collect();
                *steps += self.by_name.len() as u64;
                return Expansion {
                    actions,
                    unknown_service: false,
                };
            }
            return Expansion {
                actions: Vec::new(),
                unknown_service: true,
            };
        };
        let literal_prefix: String = lower
            .chars()
            .take_while(|c| *c != '*' && *c != '?')
            .collect();
        let mut out = Expansion::default();
        let services: Vec<(&String, &Vec<Action>)> = if service.contains(['*', '?']) {
            self.services.iter().collect()
        } else {
            match self.services.get_key_value(service) {
                Some(entry) => vec![entry],
                None => {
                    out.unknown_service = true;
                    return out;
                }
            }
        };
        for (_, actions) in services {
            for action in actions {
                *steps += 1;
                let name = action.name.to_lowercase();
                if name.starts_with(&literal_prefix) && glob_covers(&lower, &name, steps) {
                    out.actions.push(action);
                }
            }
        }
        out.actions.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn action_count(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_knows_levels_scoping_and_leaks() {
        let c = Catalog::get();
        assert!(c.action_count() > 15_000, "{}", c.action_count());
        let get_object = c.action("S3:getobject").expect("s3:GetObject");
        assert_eq!(get_object.name, "s3:GetObject");
        assert_eq!(get_object.level, Level::Read);
        assert!(get_object.resource_scoped);
        assert_eq!(c.action("ec2:StopInstances").unwrap().level, Level::Write);
        assert!(!c.action("ec2:DescribeInstances").unwrap().resource_scoped);
        assert!(c.leaks("ec2:DescribeInstanceAttribute").is_some());
        assert!(c.leaks("secretsmanager:GetSecretValue").is_some());
        assert!(c.leaks("ec2:DescribeInstances").is_none());
        assert!(c.action("ce:GetCostAndUsag").is_none(), "a typo is unknown");
    }

    #[test]
    fn wildcards_expand_exactly() {
        let c = Catalog::get();
        let mut steps = 0;
        let describe = c.expand("ec2:Describe*", &mut steps);
        assert!(describe.actions.len() > 100);
        assert!(
            describe
                .actions
                .iter()
                .all(|a| a.name.starts_with("ec2:Describe"))
        );
        assert!(
            describe
                .actions
                .iter()
                .any(|a| a.name == "ec2:DescribeInstanceAttribute")
        );
        let trusted = c.expand("support:DescribeTrustedAdvisor*", &mut steps);
        assert!(!trusted.actions.is_empty());
        assert!(c.expand("nosuchservice:Get*", &mut steps).unknown_service);
        assert!(
            c.expand("*:GetSecretValue", &mut steps)
                .actions
                .iter()
                .any(|a| a.name == "secretsmanager:GetSecretValue")
        );
    }

    #[test]
    fn names_are_judged_when_the_catalog_does_not_know_them() {
        assert_eq!(Level::guess("ce:GetNewThing"), Level::Read);
        assert_eq!(Level::guess("ce:DescribeX*"), Level::Read);
        assert_eq!(Level::guess("ce:Getaway"), Level::Write);
        assert_eq!(Level::guess("ce:UpdateThing"), Level::Write);
        assert_eq!(Level::guess("ce:Target"), Level::Write);
    }
}
