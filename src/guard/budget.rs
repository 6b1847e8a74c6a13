//! The guard's work cap. Judging must be bounded whatever a template's shape (the daemon runs under a 256 MB
//! systemd limit): every step that can grow with the product of a template's lists (intrinsic expansion,
//! alternatives, wildcard comparisons) pays into one budget, and a template that exhausts it is refused as too
//! complex to verify, never judged halfway and never a crash.

/// Work units one judgment may spend. A unit is about a byte of memory the guard builds (a resolved value costs
/// [`NODE`] plus its text) or a few steps of wildcard comparison, so the budget bounds both time and memory: a
/// judgment that spends all of it stays under 64 MB and well under a second in a release build, and a 1 MB real
/// template costs a fraction of it (figures in docs/performance.md, from `scripts/bench.sh`).
pub const WORK_BUDGET: u64 = 30_000_000;

/// The units of one resolved value (its enum, its place in a list or map), before its text.
pub const NODE: u64 = 48;

/// A judgment, or one version's model, ran out of work units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooComplex;

impl std::fmt::Display for TooComplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the template is too complex to verify (more than {WORK_BUDGET} steps of intrinsic expansion and \
             policy comparison, or values and condition references nested more than {} levels deep); it is refused, \
             pinned or not: ask the vendor for a simpler version",
            super::resolve::MAX_DEPTH
        )
    }
}

#[derive(Debug)]
pub struct Budget {
    left: u64,
    spent: u64,
}

impl Budget {
    pub fn new(units: u64) -> Budget {
        Budget {
            left: units,
            spent: 0,
        }
    }

    pub fn spend(&mut self, units: u64) -> Result<(), TooComplex> {
        if units > self.left {
            self.left = 0;
            return Err(TooComplex);
        }
        self.left -= units;
        self.spent += units;
        Ok(())
    }

    pub fn spent(&self) -> u64 {
        self.spent
    }

    pub fn left(&self) -> u64 {
        self.left
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(WORK_BUDGET)
    }
}
