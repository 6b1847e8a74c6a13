//! The guard's work cap. Judging must be bounded whatever a template's shape (the daemon runs under a 256 MB
//! systemd limit): every step that can grow with the product of a template's lists (intrinsic expansion,
//! alternatives, wildcard comparisons) pays into one budget, and a template that exhausts it is refused as too
//! complex to verify, never judged halfway and never a crash.

/// Work units one judgment may spend: roughly one unit per value visited, string byte produced or wildcard
/// comparison step. Calibrated so that a 1 MB real template costs a few percent of it and a judgment that
/// spends all of it still finishes well under a second in a release build (see `scripts/bench.sh`).
pub const WORK_BUDGET: u64 = 60_000_000;

/// A judgment, or one version's model, ran out of work units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooComplex;

impl std::fmt::Display for TooComplex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the template is too complex to verify (more than {WORK_BUDGET} steps of intrinsic expansion and \
             policy comparison); simplify its policies, or review and pin it by hand"
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
