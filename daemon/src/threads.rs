//! Threads and tasks that carry the worker's span: every line a daemon logs names its worker
//! ([`tracing::info_span!`]`("worker", worker)` is entered when the daemon starts), whichever of
//! its threads or tasks logs it.

use std::thread::JoinHandle;

use tracing::Instrument as _;

/// Starts a thread named `name` that runs `f` inside the span current here (captured now,
/// entered in the thread for its whole life).
pub(crate) fn spawn<F, T>(name: impl Into<String>, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _entered = span.entered();
        f()
    })
}

/// Spawns `task` on `rt` inside the span current here.
pub(crate) fn spawn_task<F>(rt: &tokio::runtime::Handle, task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.spawn(task.in_current_span())
}
