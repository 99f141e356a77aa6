//! What instances write to their stderr, into the daemon's log.

use super::calls::Calls;
use super::pools::Pools;

/// Instance `id` wrote `lines` to its stderr: each goes into the log with the instance, its
/// pack, and the function and invocation of the call it came from where that can be told:
/// the call a line's `[call N]` tag names, else the one call running on the instance, else
/// (none running) the last one that ended on it. With several running, it is not told.
pub(crate) fn instance_said(pools: &Pools, calls: &Calls, id: u32, lines: &[String]) {
    let inst = pools.instance(id);
    let pack = inst.map_or("", |i| pools.get(i.pool).pack_name.as_str());
    for line in lines {
        let (tag, text) = faasflow_shm::stderr::untag(line);
        let origin = inst.and_then(|i| {
            let running = match tag {
                Some(call) => Some(call),
                None if i.calls.len() == 1 => i.calls.iter().next().copied(),
                None => None,
            };
            match running.and_then(|c| calls.origin(c)) {
                Some(o) => Some(o),
                None if tag.is_some() || i.calls.is_empty() => i.ended_call(tag),
                None => None,
            }
        });
        match origin {
            Some((function, invocation)) => {
                tracing::info!(target: "faasflow::function", instance = id, pack, function, invocation, "{text}")
            }
            None => tracing::info!(target: "faasflow::function", instance = id, pack, "{text}"),
        }
    }
}
