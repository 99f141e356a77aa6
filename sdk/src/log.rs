//! An instance's stderr is its log. The daemon reads it line by line and writes each line into
//! its own log with the instance and the function and invocation of the call the line came
//! from. A line that starts with `[call N] ` is call N's: the runtime tags what it writes about
//! a call (a panic, with its backtrace when `RUST_BACKTRACE` asks for one) and, in a pack's
//! program ([`capture_stderr`]), what functions write themselves.
//!
//! # Capture
//! A pack's program makes its fd 2 a pipe of its own. Whatever is in it when a call ends is
//! that call's when no other call ran meanwhile: it is read then (before the completion is
//! sent, so a line is never mistaken for the next call's), and a thread reads it between
//! calls (so a function that writes much never blocks), tagging lines with the one call
//! running, if one is. Lines go on, tagged, to the stderr the daemon gave the process. While
//! several calls run at once in one instance, their lines are not tagged (the daemon then ties
//! them to a call only when it can).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

thread_local! {
    /// The call this thread runs, if any.
    static CALL: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Runs `f` as call `call` of this thread: a panic inside it is reported as that call's, and
/// what it writes to stderr is tagged with it.
pub(crate) fn in_call<T>(call: u64, f: impl FnOnce() -> T) -> T {
    let capture = CAPTURE.get();
    if let Some(c) = capture {
        c.started(call);
    }
    let outer = CALL.replace(Some(call));
    let out = f();
    CALL.set(outer);
    if let Some(c) = capture {
        c.ended(call);
    }
    out
}

/// The process's own stderr pipe, once [`capture_stderr`] made it.
static CAPTURE: OnceLock<Capture> = OnceLock::new();

struct Capture {
    /// The read end of the pipe that is fd 2 (non-blocking), and the start of a line read
    /// without its end.
    pipe: Mutex<(File, Vec<u8>)>,
    /// The raw fd of the read end, to wait on without the lock.
    raw: i32,
    /// Where lines go: the stderr the process was started with.
    out: Mutex<File>,
    /// How many calls are running.
    running: AtomicUsize,
}

/// The call each thread runs (0: none), one slot per thread that ever ran a call (threads
/// beyond the last slot are counted but not named): what the reading thread looks at to name
/// the one call running. Two atomic stores per call, no lock.
static SLOTS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// The next free slot.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot in [`SLOTS`], taken on its first call.
    static SLOT: Option<usize> = {
        let n = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        (n < SLOTS.len()).then_some(n)
    };
}

/// Makes fd 2 a pipe whose lines this process tags with their call before they go on to the
/// stderr it was started with. Once per process; a pack's program calls it before serving.
pub(crate) fn capture_stderr() -> io::Result<()> {
    if CAPTURE.get().is_some() {
        return Ok(());
    }
    let (read, write) = io::pipe()?;
    // SAFETY: dup(2) duplicates the process's fd 2 into a new descriptor, which is owned here
    // and nowhere else (or fails, checked below).
    let out = unsafe { libc::dup(2) };
    if out < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `out` is a fresh descriptor from dup, owned by nothing else.
    let out = unsafe { OwnedFd::from_raw_fd(out) };
    let read = OwnedFd::from(read);
    // SAFETY: fcntl and dup2 take integers; `read` and `write` are open descriptors that live
    // across the calls; dup2 atomically replaces fd 2, which stays open for the process's life.
    unsafe {
        let flags = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(read.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(OwnedFd::from(write).as_fd().as_raw_fd(), 2) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let raw = read.as_raw_fd();
    let capture = Capture {
        pipe: Mutex::new((File::from(read), Vec::new())),
        raw,
        out: Mutex::new(File::from(out)),
        running: AtomicUsize::new(0),
    };
    if CAPTURE.set(capture).is_err() {
        return Ok(());
    }
    std::thread::Builder::new().name("faasflow-stderr".into()).spawn(|| {
        if let Some(c) = CAPTURE.get() {
            c.between_calls();
        }
    })?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Capture {
    fn started(&self, call: u64) {
        self.running.fetch_add(1, Ordering::SeqCst);
        if let Some(slot) = SLOT.with(|s| *s) {
            SLOTS[slot].store(call, Ordering::SeqCst);
        }
    }

    /// Call `call` ended: what is in the pipe is its own if it ran alone.
    fn ended(&self, call: u64) {
        self.drain(call, true);
        if let Some(slot) = SLOT.with(|s| *s) {
            SLOTS[slot].store(0, Ordering::SeqCst);
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Passes on what the pipe holds now, as call `call`'s if it runs alone (and the start of
    /// an unfinished line too when `flush`).
    fn drain(&self, call: u64, flush: bool) {
        let mut pipe = lock(&self.pipe);
        // It is still counted: alone when it is the only one.
        let alone = self.running.load(Ordering::SeqCst) == 1;
        self.pass_on(&mut pipe, alone.then_some(call), flush);
    }

    /// The one call running, if exactly one runs (and it has a slot).
    fn only_call(&self) -> Option<u64> {
        if self.running.load(Ordering::SeqCst) != 1 {
            return None;
        }
        let mut named = SLOTS.iter().map(|s| s.load(Ordering::SeqCst)).filter(|&c| c != 0);
        match (named.next(), named.next()) {
            (Some(call), None) => Some(call),
            _ => None,
        }
    }

    /// Reads the pipe whenever it has something, tagging lines with the one call running.
    fn between_calls(&self) {
        loop {
            let mut poll = libc::pollfd {
                fd: self.raw,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; `raw` stays open for the process's life.
            let n = unsafe { libc::poll(&mut poll, 1, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let mut pipe = lock(&self.pipe);
            let only = self.only_call();
            if !self.pass_on(&mut pipe, only, false) {
                return;
            }
        }
    }

    /// Reads what the pipe holds and passes its lines on, tagged with `call` when given; the
    /// start of an unfinished line waits for its end unless `flush`. False at the pipe's end.
    fn pass_on(&self, pipe: &mut (File, Vec<u8>), call: Option<u64>, flush: bool) -> bool {
        let (file, partial) = pipe;
        let mut buf = [0u8; 1024];
        let mut open = true;
        loop {
            match file.read(&mut buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let end = if flush || !open {
            partial.len()
        } else {
            partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        };
        if end > 0 {
            let text = String::from_utf8_lossy(&partial[..end]).into_owned();
            let _ = lock(&self.out).write_all(tagged(call, &text).as_bytes());
            partial.drain(..end);
        }
        open
    }
}

/// `text`, each of its lines prefixed with its call's tag when it has a call.
pub(crate) fn tagged(call: Option<u64>, text: &str) -> String {
    let tag = call.map(faasflow_shm::stderr::tag).unwrap_or_default();
    let mut out = String::with_capacity(text.len() + tag.len() + 1);
    for line in text.lines() {
        out.push_str(&tag);
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes `text` to the instance's log, each line tagged with `call` when given, in one write
/// (so lines of different threads do not interleave within it).
pub(crate) fn line(call: Option<u64>, text: &str) {
    let text = tagged(call, text);
    match CAPTURE.get() {
        // Straight to the daemon: the pipe would tag it again.
        Some(c) => {
            let _ = lock(&c.out).write_all(text.as_bytes());
        }
        None => {
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}

/// Makes a panic inside a call report itself as that call's: its message, where it happened
/// and (when `RUST_BACKTRACE` is set) its backtrace, each line tagged with the call. Panics
/// outside calls go to the hook that was there before. Installed once per process.
pub(crate) fn tie_panics_to_calls() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let Some(call) = CALL.get() else {
                return before(info);
            };
            // What the call wrote before it panicked goes first.
            if let Some(c) = CAPTURE.get() {
                c.drain(call, false);
            }
            line(Some(call), &panic_report(info));
        }));
    });
}

/// What a panic hook says about a panic: where, what, and the backtrace when one is captured.
fn panic_report(info: &std::panic::PanicHookInfo<'_>) -> String {
    let what = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a payload that is not a string");
    let thread = std::thread::current();
    let mut out = format!("thread '{}' panicked", thread.name().unwrap_or("<unnamed>"));
    if let Some(at) = info.location() {
        out.push_str(&format!(" at {at}"));
    }
    out.push_str(&format!(":\n{what}\n"));
    let trace = std::backtrace::Backtrace::capture();
    if trace.status() == std::backtrace::BacktraceStatus::Captured {
        out.push_str(&format!("stack backtrace:\n{trace}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_a_call_is_tagged_and_others_are_not() {
        assert_eq!(tagged(Some(7), "a\nb\n"), "[call 7] a\n[call 7] b\n");
        assert_eq!(tagged(None, "a"), "a\n");
    }

    #[test]
    fn the_call_is_known_inside_and_forgotten_after() {
        assert_eq!(CALL.get(), None);
        let inner = in_call(3, || in_call(4, || CALL.get()));
        assert_eq!(inner, Some(4));
        assert_eq!(in_call(3, || CALL.get()), Some(3));
        assert_eq!(CALL.get(), None);
    }
}
