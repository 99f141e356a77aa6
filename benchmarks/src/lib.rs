//! faasflow's end-to-end benchmarks. The code is in `benches/` (`harness = false` benches that
//! print Markdown tables); `cargo xtask bench` runs them and writes `benchmarks/RESULTS.md`.
//! See `benchmarks/README.md`.
