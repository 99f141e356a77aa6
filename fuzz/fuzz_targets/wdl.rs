//! Workflow files are untrusted: any bytes (read as UTF-8, lossily) either load or give a
//! located error. What loads is partitioned in both modes on the cluster picked by the first
//! byte and rendered in every format (`faasflow_fuzz::check_workflow`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let selector = data.first().copied().unwrap_or(0);
    faasflow_fuzz::check_text(&text, selector);
});
