//! FaaSFlow workflow files are untrusted: any bytes (read as UTF-8, lossily) that parse as
//! YAML go through both importers, the flat form's (`flat_workflow.yaml`) and the
//! hierarchical form's (`workflow.yaml`), whatever form the loader would recognise. Each either
//! rejects the file with an error or imports it, and what it imports is partitioned and
//! rendered on the cluster picked by the first byte (`faasflow_fuzz::check_faasflow_text`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let selector = data.first().copied().unwrap_or(0);
    faasflow_fuzz::check_faasflow_text(&text, selector);
});
