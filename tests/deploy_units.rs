//! The deployment artifacts under deploy/ are part of the product: a unit that systemd rejects or a manifest that
//! cannot start the daemon is a bug like any other. These tests check them by reading them (the systemd unit also
//! through `systemd-analyze`; Docker and Kubernetes are not available to the test suite) and by feeding the
//! settings and desired state they carry through stacksetd's own loaders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stacksetd::settings::{Overrides, Settings};

/// The bar for `systemd-analyze security`: 0 is fully locked down, 10 is fully exposed.
const MAX_EXPOSURE: f64 = 1.5;
/// Where the unit expects the binary; the tests point a copy at the freshly built one instead.
const INSTALLED_BINARY: &str = "/usr/bin/stacksetd";
/// The HTTP port every deployment artifact uses (the default of the settings key `listen`).
const HTTP_PORT: u16 = 9464;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The documented settings (config/stacksetd.yaml), with `env` on top: what the daemon would run with.
fn settings_with_env(env: &[(String, String)]) -> Result<Settings, stacksetd::error::Error> {
    Settings::load_from(
        Some(&repo("config/stacksetd.yaml")),
        &Overrides::default(),
        env.to_vec(),
    )
}

fn documented_shutdown_timeout() -> Duration {
    settings_with_env(&[])
        .expect("config/stacksetd.yaml loads")
        .shutdown_timeout
        .0
}

#[path = "deploy_units/container.rs"]
mod container;
#[path = "deploy_units/events.rs"]
mod events;
#[path = "deploy_units/kubernetes.rs"]
mod kubernetes;
#[path = "deploy_units/systemd.rs"]
mod systemd;
