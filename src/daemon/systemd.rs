//! systemd integration through sd-notify: READY=1 once the daemon is ready, STOPPING=1 when shutdown begins,
//! WATCHDOG=1 at half the watchdog interval, from the main loop. Every call is a no-op when NOTIFY_SOCKET is unset (not under
//! systemd, containers, tests).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::{debug, warn};

fn send(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        warn!(error = %e, "sd_notify failed");
    }
}

/// Tell systemd we are ready once `ready` turns true.
pub async fn notify_ready(mut ready: watch::Receiver<bool>) {
    if ready.wait_for(|r| *r).await.is_ok() {
        debug!("sd_notify READY=1");
        send(NotifyState::Ready);
    }
}

pub fn notify_stopping() {
    send(NotifyState::Stopping);
}

/// The systemd watchdog, pinged by the daemon's main loop itself (never by a task of its own), so a loop that
/// hangs - a blocked file read, a deadlock - stops the pings and systemd restarts the service.
pub struct Watchdog {
    /// Half of WATCHDOG_USEC; `None` when no watchdog is configured for this process.
    ticker: Option<tokio::time::Interval>,
}

impl Watchdog {
    pub fn from_env() -> Watchdog {
        let ticker = sd_notify::watchdog_enabled().map(|interval| {
            let period = (interval / 2).max(Duration::from_millis(50));
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        Watchdog { ticker }
    }

    /// Resolves when the next ping is due (never without a watchdog): a `select!` arm of the main loop.
    pub async fn due(&mut self) {
        match &mut self.ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    pub fn ping(&self) {
        send(NotifyState::Watchdog);
    }
}
