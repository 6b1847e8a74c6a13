//! The command line's library side: what `stacksetd` prints and the commands that are more than a call into
//! the controller. `src/main.rs` parses the flags and dispatches here (anyhow lives only there).
//!
//! - `output`: `plan` in the style of `terraform plan`, its JSON form, progress lines, and `safe` (escaping text
//!   from templates and AWS before it is printed).
//! - `status_view`: `stacksetd status`, from a running daemon's /status or observed from AWS; `tree`: its
//!   `--tree` form (every account in the organization's tree, coloured by state).
//! - `review`: `stacksetd template check` and `template diff`, the guard offline.

pub mod output;
pub mod review;
pub mod status_view;
pub mod tree;
