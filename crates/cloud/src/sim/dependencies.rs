//! AutoDeployment.DependsOn under the API's rules: at most 10 stack sets, each an existing (service-managed)
//! stack set's ARN, never the stack set itself, and no cycle through the stack sets' own DependsOn. A request
//! that breaks one is refused with a ValidationError, as AWS refuses it.

use std::collections::{BTreeMap, BTreeSet};

use super::faults::SimError;
use super::stacksets::StackSetState;

/// AWS's limit.
const MAX_DEPENDS_ON: usize = 10;

/// Check `depends_on` for stack set `name` (ARN `own_arn` once it exists) against the stack sets there are.
pub(super) fn check(
    stack_sets: &BTreeMap<String, StackSetState>,
    name: &str,
    own_arn: Option<&str>,
    depends_on: &[String],
) -> Result<(), SimError> {
    if depends_on.len() > MAX_DEPENDS_ON {
        return Err(SimError::validation(format!(
            "DependsOn accepts at most {MAX_DEPENDS_ON} StackSets, got {}",
            depends_on.len()
        )));
    }
    let by_arn: BTreeMap<&str, &StackSetState> = stack_sets
        .values()
        .filter(|s| s.status == crate::StackSetStatus::Active)
        .map(|s| (s.arn.as_str(), s))
        .collect();
    for arn in depends_on {
        if Some(arn.as_str()) == own_arn {
            return Err(SimError::validation("A StackSet cannot depend on itself"));
        }
        if !by_arn.contains_key(arn.as_str()) {
            return Err(SimError::validation(format!(
                "StackSet {arn} in DependsOn does not exist"
            )));
        }
    }
    // Follow each dependency's own DependsOn: reaching this stack set again is a cycle.
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut frontier: Vec<&str> = depends_on.iter().map(String::as_str).collect();
    while let Some(arn) = frontier.pop() {
        if !seen.insert(arn) {
            continue;
        }
        let Some(state) = by_arn.get(arn) else {
            continue;
        };
        if state.name == name {
            return Err(SimError::validation(format!(
                "Circular dependency detected: {name} depends on itself through {arn}"
            )));
        }
        if let Some(auto) = &state.settings.auto_deployment {
            frontier.extend(auto.depends_on.iter().map(String::as_str));
        }
    }
    Ok(())
}
