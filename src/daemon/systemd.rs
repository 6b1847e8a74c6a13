//! systemd integration through sd-notify: READY=1 once the daemon is ready, STOPPING=1 when shutdown begins,
//! WATCHDOG=1 at half the watchdog interval. Every call is a no-op when NOTIFY_SOCKET is unset (not under
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

/// Ping the watchdog at half of WATCHDOG_USEC while the runtime is alive; returns at once when no watchdog is
/// configured for this process.
pub async fn watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        send(NotifyState::Watchdog);
    }
}
