//! The grammar of the `wdl_structured` target must make files that compile often enough
//! (about a third do): otherwise the fuzzer never gets past the compiler's first error.
//!
//! To look at what it makes: `SHOW_WORKFLOWS=1` prints a few files, `SHOW_ERRORS=1` every
//! compile error with its line, `SHOW_FAILING='<part of a message>'` the files failing so.

use arbitrary::Unstructured;
use faasflow_planner::load::load_str;

/// A fixed pseudo-random byte stream (splitmix64), so the test needs no dependency.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

#[test]
fn the_grammar_reaches_the_partitioner() {
    let (mut ok, total) = (0, 500);
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for seed in 0..total {
        let data = bytes(seed, 600);
        let text = faasflow_fuzz::structured::workflow(&mut Unstructured::new(&data)).unwrap();
        if std::env::var_os("SHOW_WORKFLOWS").is_some() && seed < 3 {
            eprintln!("----\n{text}");
        }
        match load_str(&text, "gen.yaml", "gen") {
            Ok(loaded) => {
                ok += 1;
                faasflow_fuzz::check_workflow(&loaded.workflow, data[0]);
            }
            Err(e) => {
                if std::env::var_os("SHOW_ERRORS").is_some() {
                    let line = text.lines().nth(e.pos.line.saturating_sub(1) as usize).unwrap_or("");
                    eprintln!("{e}\n    >> {line}");
                    if std::env::var_os("SHOW_FAILING").is_some_and(|v| e.message.contains(v.to_str().unwrap())) {
                        eprintln!("{text}");
                    }
                }
                *errors.entry(format!("{:?}", e.kind)).or_default() += 1
            }
        }
    }
    eprintln!("{ok} of {total} generated workflows compile; errors by kind: {errors:?}");
    assert!(ok * 5 >= total, "only {ok} of {total} generated workflows compile");
}
