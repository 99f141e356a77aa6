//! FaaSFlow's synthetic benchmark function: reads every input, fills every reserved output,
//! and takes a given time. Workflows whose functions name no `pack` run it.
//!
//! Parameters (the call's [`params`](crate::Context::params)): JSON `{"runtime_us": N,
//! "busy": B, "values": {"output": <JSON>, …}}`: the time one call takes in microseconds,
//! counted from the start of the call (reading and writing included), whether it waits that
//! time out busy (spinning on its core, like a function that computes) rather than sleeping
//! (the default, as FaaSFlow's body does), and the JSON value to write for
//! outputs that must be JSON (a switch reads them, a foreach iterates them) instead of the byte
//! pattern; empty parameters mean `{}`.

use std::time::Duration;

use serde::Deserialize;

use crate::{Context, Error, Pack};

/// Name of the synthetic pack, and of its one function.
/// ```
/// assert_eq!(faasflow_sdk::synthetic::pack().name(), faasflow_sdk::synthetic::NAME);
/// ```
pub const NAME: &str = "synthetic";

/// The parameters of a synthetic call.
/// ```
/// use faasflow_sdk::synthetic::Params;
///
/// let p: Params = serde_json::from_str(r#"{"runtime_us": 1500}"#)?;
/// assert_eq!(p.runtime_us, 1500);
/// assert_eq!(serde_json::from_str::<Params>("{}")?, Params::default());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Time one call takes, in microseconds.
    #[serde(default)]
    pub runtime_us: u64,
    /// Wait the time out busy (on the core) rather than sleeping.
    #[serde(default)]
    pub busy: bool,
    /// JSON values of outputs that must be JSON, by output name.
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A pack named `synthetic` with the one function `synthetic` ([`body`]).
/// ```
/// let pack = faasflow_sdk::synthetic::pack();
/// assert_eq!(pack.name(), "synthetic");
/// assert_eq!(pack.function_names().collect::<Vec<_>>(), ["synthetic"]);
/// ```
pub fn pack() -> Pack {
    Pack::new(NAME).function(NAME, body)
}

/// The synthetic body: reads every byte of every input (objects and lists), fills each
/// reserved output extent completely with a byte pattern (reported as written in full) or,
/// for an output named in `values`, writes that JSON value; then sleeps (or, `busy`, spins)
/// for whatever is left of `runtime_us` since the call started.
/// ```
/// use faasflow_sdk::testing::TestCall;
///
/// let outcome = TestCall::new("synthetic")
///     .params(r#"{"runtime_us": 1000}"#)
///     .input("in", vec![7u8; 100])
///     .reserve("out", 64)
///     .run(faasflow_sdk::synthetic::body)?;
/// assert_eq!(outcome.output("out").map(<[u8]>::len), Some(64));
/// # Ok::<(), faasflow_sdk::Error>(())
/// ```
pub fn body(ctx: &mut Context<'_>) -> Result<(), Error> {
    let params = if ctx.params().iter().all(u8::is_ascii_whitespace) {
        Params::default()
    } else {
        ctx.params_json::<Params>()?
    };
    let mut sum = 0u64;
    let names: Vec<&str> = ctx.input_names().collect();
    for name in names {
        for object in ctx.inputs(name)? {
            sum = sum.wrapping_add(checksum(object));
        }
    }
    std::hint::black_box(sum);
    let reservations: Vec<(&str, usize)> = ctx.output_reservations().collect();
    for (name, len) in reservations {
        match params.values.get(name) {
            Some(v) => ctx.output_json(name, v)?,
            None => ctx.output_with(name, len, fill)?,
        }
    }
    for (name, v) in &params.values {
        if !ctx.output_reservations().any(|(n, _)| n == name) {
            ctx.output_json(name, v)?;
        }
    }
    let target = Duration::from_micros(params.runtime_us);
    if params.busy {
        while ctx.started.elapsed() < target {
            std::hint::spin_loop();
        }
    } else if let Some(left) = target.checked_sub(ctx.started.elapsed()) {
        std::thread::sleep(left);
    }
    Ok(())
}

/// A wrapping sum of the bytes as little-endian u64 words (the tail as one short word), so
/// that every byte is read.
fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut sum = words
        .by_ref()
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .fold(0u64, u64::wrapping_add);
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    sum = sum.wrapping_add(u64::from_le_bytes(tail));
    sum
}

/// The period of the byte pattern of synthetic outputs.
const PERIOD: usize = 251;
/// A whole number of periods of the pattern.
const BLOCK: usize = PERIOD * 256;
/// The pattern, made once, at compile time: filling an output costs a copy of its own size
/// and nothing per call (building it in every call cost about 60 µs, whatever the output's size).
static PATTERN: [u8; BLOCK] = pattern();

const fn pattern() -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    let mut i = 0;
    while i < BLOCK {
        block[i] = (i % PERIOD) as u8;
        i += 1;
    }
    block
}

/// The byte pattern of synthetic outputs: byte `i` is `i % 251`. Written a block at a time
/// (a whole number of periods), so that large outputs cost about a `memset`.
fn fill(buf: &mut [u8]) {
    for chunk in buf.chunks_mut(BLOCK) {
        chunk.copy_from_slice(&PATTERN[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCall;
    use std::time::Instant;

    #[test]
    fn checksum_reads_every_byte() {
        assert_eq!(checksum(&[]), 0);
        assert_eq!(checksum(&[1]), 1);
        assert_eq!(checksum(&[0, 0, 0, 0, 0, 0, 0, 0, 2]), 2);
        assert_eq!(checksum(&[1, 0, 0, 0, 0, 0, 0, 0, 2]), 3);
        assert_eq!(checksum(&[0, 1]), 256);
    }

    /// CPU time this thread has run, from the scheduler's statistics.
    fn thread_cpu() -> Duration {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
        Duration::from_nanos(
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number"),
        )
    }

    /// Sleeping takes the time without the core; busy takes the core for the time.
    #[test]
    fn a_busy_body_spends_its_runtime_on_the_core_and_a_sleeping_one_does_not() {
        for (busy, params) in [
            (false, r#"{"runtime_us": 30000}"#),
            (true, r#"{"runtime_us": 30000, "busy": true}"#),
        ] {
            let (start, cpu) = (Instant::now(), thread_cpu());
            TestCall::new(NAME).params(params).run(body).expect("runs");
            let (wall, cpu) = (start.elapsed(), thread_cpu() - cpu);
            assert!(wall >= Duration::from_millis(30), "busy {busy}: {wall:?}");
            if busy {
                // Spinning on a shared machine may be preempted: most of the time, not all.
                assert!(cpu >= Duration::from_millis(15), "busy: {cpu:?} of CPU in {wall:?}");
            } else {
                assert!(cpu < Duration::from_millis(5), "sleeping: {cpu:?} of CPU in {wall:?}");
            }
        }
    }

    #[test]
    fn fills_every_reservation_and_takes_its_runtime() {
        let start = Instant::now();
        let outcome = TestCall::new(NAME)
            .params(r#"{"runtime_us": 20000}"#)
            .input("a", vec![1u8; 1000])
            .input_list("b", [vec![2u8; 10], vec![3u8; 3]])
            .input_absent("c")
            .reserve("x", 300)
            .reserve("y", 0)
            .run(body)
            .expect("runs");
        assert!(start.elapsed() >= Duration::from_millis(20));
        let x = outcome.output("x").expect("x written");
        assert_eq!(x.len(), 300);
        assert!(x.iter().enumerate().all(|(i, b)| usize::from(*b) == i % 251));
        assert_eq!(outcome.output("y"), Some(&[][..]));
        // Past one block of the pattern, it goes on with the same period.
        let outcome = TestCall::new(NAME)
            .reserve("big", BLOCK + 1000)
            .run(body)
            .expect("runs");
        let big = outcome.output("big").expect("written");
        assert!(big.iter().enumerate().all(|(i, b)| usize::from(*b) == i % 251));
        assert!(outcome.allocs().is_empty(), "only reservations are written");
    }

    #[test]
    fn params_are_optional_but_checked() {
        assert!(TestCall::new(NAME).run(body).is_ok());
        assert!(TestCall::new(NAME).params("{}").run(body).is_ok());
        let err = TestCall::new(NAME).params(r#"{"runtime": 5}"#).run(body).unwrap_err();
        assert!(err.message().contains("unknown field `runtime`"), "{err}");
    }
}
