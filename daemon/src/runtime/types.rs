//! Small names every part of the runtime uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A workflow version: (name, version), shared (cloned on every call).
pub(crate) type WfKey = Arc<(String, u64)>;

/// A duration in µs, as reports count time.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// µs from `from` to `to` (0 when `to` is earlier).
pub(crate) fn us_between(from: Instant, to: Instant) -> f64 {
    us(to.saturating_duration_since(from))
}

/// When something ended that an instance on this host stamped `ended_ns`
/// ([`faasflow_shm::frame::monotonic_ns`]), as an `Instant`: no later than `now`.
pub(crate) fn ended_at(ended_ns: u64, now: Instant) -> Instant {
    let (instant, mono) = (Instant::now(), faasflow_shm::frame::monotonic_ns());
    instant
        .checked_sub(Duration::from_nanos(mono.saturating_sub(ended_ns)))
        .map_or(now, |at| at.min(now))
}

/// The workflow version an unknown invocation's objects are kept under.
pub(crate) fn no_version() -> WfKey {
    Arc::new((String::new(), 0))
}
