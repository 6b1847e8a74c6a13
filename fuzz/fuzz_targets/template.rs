//! The template parser, IAM extraction, allowlists, diff and update decision on arbitrary bytes:
//! `cargo +nightly fuzz run template`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stacksetd::fuzzing::template(data);
});
