//! WDL files from a small grammar (`faasflow_fuzz::structured`): always YAML with the
//! language's keys, so most inputs reach the compiler and the partitioner. The first byte
//! picks the cluster; the rest drives the grammar.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let Ok(text) = faasflow_fuzz::structured::workflow(&mut u) else {
        return;
    };
    faasflow_fuzz::check_text(&text, selector);
});
