//! Fuzz target: arbitrary text as a last-fence record (`pmkt-fence-last-<rsc>`, which
//! `vm-ctl status` reads from the CIB's status section).
//!
//! Checks, beyond "never panics": a value that parses is exactly what the writer writes for the
//! record it parsed to (nothing is accepted loosely), and a refusal quotes a bounded prefix.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vm_fence::record::FenceRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match FenceRecord::parse(text) {
        Ok(record) => assert_eq!(record.to_value(), text),
        Err(e) => assert!(e.value.chars().count() <= 200),
    }
});
