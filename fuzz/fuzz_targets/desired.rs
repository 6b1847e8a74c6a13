//! The desired-state parser and validator on arbitrary bytes: `cargo +nightly fuzz run desired`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stacksetd::fuzzing::desired(data);
});
