//! An instance's stderr, read line by line on a thread of its own and posted to the loop in
//! batches (`pool::Report::Said`), which writes each line into the daemon's log with the instance
//! and the call it came from (`Runtime::instance_said`, in `runtime/mod.rs`).
//!
//! The thread ends when the pipe reads end-of-file (the process and whatever it forked have
//! exited); the instance's watcher waits for that, briefly, before reporting the exit, so the
//! last lines a crashing instance writes are logged before its calls are failed.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::Duration;

use crate::threads;

/// The longest line logged as one; a longer one is logged in pieces of this size.
pub(crate) const MAX_LINE: usize = 16 << 10;

/// At most this many lines go in one report: a chatty instance is logged as it goes.
const MAX_BATCH: usize = 256;

/// How long an instance's watcher waits for the rest of its stderr after it exited.
pub(crate) const DRAIN: Duration = Duration::from_millis(500);

/// Reads `pipe`, instance `instance`'s stderr, handing its lines to `said` in batches. The
/// receiver disconnects when the pipe is read to its end (or could not be watched).
pub(crate) fn forward(
    instance: u32,
    pipe: impl Read + Send + 'static,
    said: impl Fn(Vec<String>) + Send + 'static,
) -> mpsc::Receiver<()> {
    let (done, ended) = mpsc::channel::<()>();
    let reader = move || {
        let _done = done;
        let mut pipe = BufReader::with_capacity(64 << 10, pipe);
        while let Some(lines) = batch(&mut pipe) {
            said(lines);
        }
    };
    if let Err(e) = threads::spawn(format!("faasflow-stderr-{instance}"), reader) {
        tracing::warn!(instance, "the instance's stderr cannot be read: {e}");
    }
    ended
}

/// The next lines of `pipe`: one, waiting for it, then those already buffered. `None` at the
/// end of the pipe.
fn batch(pipe: &mut BufReader<impl Read>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = pipe.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut line).ok()?;
        if n == 0 {
            return (!lines.is_empty()).then_some(lines);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        lines.push(String::from_utf8_lossy(&line).into_owned());
        if lines.len() >= MAX_BATCH || !pipe.buffer().contains(&b'\n') {
            return Some(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_in_batches_and_a_long_one_in_pieces() {
        let mut text = b"one\ntwo\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE + 3));
        text.extend(b"\nlast without newline");
        let mut pipe = BufReader::new(&text[..]);
        let mut all = Vec::new();
        while let Some(lines) = batch(&mut pipe) {
            assert!(!lines.is_empty());
            all.extend(lines);
        }
        assert_eq!(all.len(), 5, "{:?}", all.iter().map(String::len).collect::<Vec<_>>());
        assert_eq!((all[0].as_str(), all[1].as_str()), ("one", "two"));
        assert_eq!((all[2].len(), all[3].len()), (MAX_LINE, 3));
        assert_eq!(all[4], "last without newline");
    }
}
