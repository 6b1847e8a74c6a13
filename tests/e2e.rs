//! The end-to-end test binary: the stacksetd binary and the AWS SDK against moto (or fakecloud with
//! `scripts/test.sh --backend fakecloud`), on 127.0.0.1. One binary instead of one per file, so the AWS SDK is
//! linked once; each file below is still its own module (`cargo test --test e2e crash_moto::` runs one).

mod common;
mod daemon_support;
mod fault_support;

mod coverage_moto;
mod crash_moto;
mod daemon_process;
mod e2e_moto;
mod events_moto;
mod faults_moto;
mod leases_moto;
mod local_aws;
mod management_stack_moto;
mod moto_harness;
mod observability_moto;
mod rollout_moto;
mod safety_moto;
mod template_oracle;
mod tenants_moto;
