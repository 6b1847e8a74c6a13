//! Builders the unit tests share: a deployment from a few spec lines, and a seeded proptest runner. Tests say
//! what differs from the defaults and nothing else, so a new required field is added here once.

use std::path::Path;

use crate::desired::Deployment;

/// A deployment document: `metadata.name`, `stackSetName`, `managementAccountId` and a file template URL by
/// default, then the spec lines given (indented by two spaces, one field per line).
pub struct DeploymentYaml {
    name: String,
    stack_set: String,
    management_account: String,
    lines: Vec<String>,
}

impl Default for DeploymentYaml {
    fn default() -> Self {
        Self::new()
    }
}

impl DeploymentYaml {
    /// `name: t`, `stackSetName: Vendor`, `managementAccountId: "111111111111"`, no targets yet.
    pub fn new() -> DeploymentYaml {
        DeploymentYaml {
            name: "t".into(),
            stack_set: "Vendor".into(),
            management_account: "111111111111".into(),
            lines: Vec::new(),
        }
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn stack_set(mut self, stack_set: &str) -> Self {
        self.stack_set = stack_set.into();
        self
    }

    pub fn management_account(mut self, id: &str) -> Self {
        self.management_account = id.into();
        self
    }

    /// Spec lines as written in a file, each indented by two spaces (`"  regions: [us-east-1]\n"`).
    pub fn spec(mut self, lines: &str) -> Self {
        self.lines.push(lines.to_string());
        self
    }

    /// `deploymentTargets` by OU (or `ROOT`) and `regions`.
    pub fn targets(self, units: &[&str], regions: &[&str]) -> Self {
        self.spec(&format!(
            "  deploymentTargets: {{organizationalUnitIds: [{}]}}\n  regions: [{}]\n",
            units.join(", "),
            regions.join(", ")
        ))
    }

    pub fn yaml(&self) -> String {
        let mut yaml = format!(
            "apiVersion: stacksetd.dev/v1alpha1\nkind: StackSetDeployment\nmetadata: {{name: {}}}\nspec:\n  \
             stackSetName: {}\n  managementAccountId: \"{}\"\n",
            self.name, self.stack_set, self.management_account
        );
        if !self.lines.iter().any(|l| l.contains("template:")) {
            yaml.push_str("  template: {url: \"file:///t.json\"}\n");
        }
        for lines in &self.lines {
            yaml.push_str(lines);
        }
        yaml
    }

    /// The parsed and validated deployment; panics with the document when it is not valid.
    pub fn build(&self) -> Deployment {
        let yaml = self.yaml();
        crate::desired::parse_str(&yaml, Path::new("t.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
            .remove(0)
    }
}

/// A proptest runner with `cases` cases from a fixed seed (`default_seed`, or STACKSETD_PROPTEST_SEED to replay
/// a failure; the seed is printed) and no failure files: the unit tests' properties are reproducible.
pub fn proptest_runner(cases: u32, default_seed: u64) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let seed = std::env::var("STACKSETD_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    println!("proptest seed {seed} (replay: STACKSETD_PROPTEST_SEED={seed})");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}
