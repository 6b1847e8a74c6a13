//! The test binary for what ships beside the code and for the daemon as a process without an emulator: signals
//! and shutdown, the deploy units (systemd-analyze), the monitoring rules (promtool) and the config examples.
//! Each file below is its own module (`cargo test --test process monitoring::` runs one).

mod common;
mod daemon_support;

mod daemon_signals;
mod deploy_units;
mod examples;
mod first_hour;
mod layers;
mod monitoring;
