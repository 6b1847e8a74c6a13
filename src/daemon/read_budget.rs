//! The daemon's CloudFormation read budget: one token bucket shared by every deployment, so that however many
//! stack sets the daemon keeps, its reads (DescribeStackSet, the listings, DescribeStackSetOperation...) stay
//! under `aws.max_read_rate` calls a second and leave the account's CloudFormation quota to the other tools in it.
//!
//! A call takes a token before it goes; a listing's further pages are charged when it returns (the `Cloud`
//! trait hands back whole listings), so the bucket may go into debt and the next readers wait it off. Waiting is
//! in order of arrival: each caller reserves its slot and sleeps until it, so nobody starves behind a later
//! caller. Writes are not counted: they are rare, and delaying a submission only widens the window in which
//! the world can change under a plan.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Calls that may go at once after a quiet while (a pass's handful of reads never waits for the budget).
pub const READ_BURST: f64 = 10.0;

/// The default of `aws.max_read_rate`, calls a second (CloudFormation's documented per-account quotas for these
/// reads are a few times higher: the rest is left to the console, pipelines and other tools).
pub const DEFAULT_MAX_READ_RATE: u32 = 5;

#[derive(Debug)]
pub struct ReadBudget {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Negative when callers are queued (each waits until its share has accrued).
    tokens: f64,
    at: Instant,
}

impl ReadBudget {
    pub fn new(max_per_second: u32) -> ReadBudget {
        ReadBudget {
            per_second: f64::from(max_per_second.max(1)),
            bucket: Mutex::new(Bucket {
                tokens: READ_BURST,
                at: Instant::now(),
            }),
        }
    }

    /// Take `calls` tokens now; how long the caller must wait before its call may go (pure bookkeeping).
    fn reserve(&self, calls: u32, now: Instant) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(READ_BURST);
        bucket.at = now;
        bucket.tokens -= f64::from(calls);
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.per_second)
        }
    }

    /// Wait for one call's turn.
    pub async fn admit(&self) {
        let wait = self.reserve(1, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Charge calls already made (a listing's pages after its first): later callers wait them off.
    pub fn charge(&self, calls: u32) {
        if calls > 0 {
            self.reserve(calls, Instant::now());
        }
    }
}

/// The calls a CloudFormation listing of `items` took ([`crate::cloud::pages`] of 100).
pub fn pages(items: usize) -> u32 {
    let calls = crate::cloud::pages(items, crate::cloud::CLOUDFORMATION_PAGE);
    u32::try_from(calls).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_calls_go_at_the_rate() {
        let budget = ReadBudget::new(5);
        let t0 = Instant::now();
        for _ in 0..READ_BURST as usize {
            budget.admit().await;
        }
        assert_eq!(Instant::now(), t0, "the burst does not wait");
        for _ in 0..20 {
            budget.admit().await;
        }
        assert_eq!(
            Instant::now() - t0,
            Duration::from_secs(4),
            "20 more at 5/s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_listing_is_paid_by_the_next_readers() {
        let budget = ReadBudget::new(5);
        let t0 = Instant::now();
        budget.admit().await;
        budget.charge(pages(15_000) - 1); // 150 pages in all
        budget.admit().await;
        // 151 calls against a burst of 10 at 5/s: the last waits for the 141 tokens missing, 28.2 s.
        let waited = (Instant::now() - t0).as_secs_f64();
        assert!((waited - 28.2).abs() < 0.01, "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_readers_keep_the_rate_and_their_order() {
        let budget = std::sync::Arc::new(ReadBudget::new(5));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..60)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget.admit().await;
                    Instant::now()
                })
            })
            .collect();
        let mut ends = Vec::new();
        for task in tasks {
            ends.push(task.await.unwrap());
        }
        ends.sort();
        let last = ends.last().unwrap().duration_since(t0);
        // 60 calls, 10 at once, 50 at 5/s: 10 s, never sooner.
        assert_eq!(last, Duration::from_secs(10));
        // In any 1 s window at most burst + rate calls went.
        for (i, start) in ends.iter().enumerate() {
            let within = ends[i..]
                .iter()
                .filter(|t| t.duration_since(*start) < Duration::from_secs(1))
                .count();
            assert!(within <= READ_BURST as usize + 5, "{within} calls in 1 s");
        }
    }

    #[test]
    fn pages_count_like_the_api() {
        assert_eq!(pages(0), 1);
        assert_eq!(pages(100), 1);
        assert_eq!(pages(101), 2);
        assert_eq!(pages(15_000), 150);
    }
}
