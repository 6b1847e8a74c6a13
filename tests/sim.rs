//! The in-process test binary: the controller and the daemon on the simulated organization (`sim`), the template
//! guard on real vendors' histories, template fetching, bad inputs and fuzzing, and the AWS adapter against
//! aws-smithy-mocks. No emulator, no process. One binary instead of one per file, so the AWS SDK is linked once;
//! each file below is still its own module (`cargo test --test sim controller_sim::` runs one).

mod daemon_support;
mod templates_support;

mod aws_mocks;
mod bad_inputs;
mod controller_sim;
mod daemon_sim;
mod fuzz_smoke;
mod guard_corpus;
mod guard_mutations;
mod iam_policy;
mod template_fetch;
mod templates_daemon;
mod templates_sim;
