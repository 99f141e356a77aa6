//! Writing faasflow functions in Rust.
//!
//! A *function* is a plain Rust function `fn(&mut Context) -> Result<(), Error>`. It reads its
//! inputs with [`Context::input`] and friends (byte slices of the daemon's shared-memory arena,
//! never copied) and writes its outputs with [`Context::output`] or
//! [`Context::output_with`] (straight into the arena, written once). A *pack* is an executable
//! that registers functions in a [`Pack`] and hands it to [`serve`]; the faasflow daemon
//! starts packs as processes (instances), sends them calls and collects the results.
//!
//! What this crate does: the function API ([`Context`], [`Error`]), the pack runtime that
//! serves an instance (the handshake, the control rings, threads, grants, panics), the
//! [`synthetic`] benchmark body, and [`testing`] for running a function in a unit test.
//!
//! What it does not do: it does not start instances, allocate arena memory or decide where
//! objects live (the daemon does), it does not talk to the network or to Redis, it has no
//! async runtime, and it does not deploy or invoke workflows.
//!
//! # Writing a pack
//! A pack is a binary crate depending on `faasflow-sdk` (and `serde_json` here, for JSON
//! outputs). Its `main` builds the pack and serves it:
//! ```no_run
//! use faasflow_sdk::{Context, Error, Pack};
//! use std::collections::BTreeMap;
//!
//! /// Counts the words of input `text` into output `counts` (a JSON object).
//! fn count(ctx: &mut Context<'_>) -> Result<(), Error> {
//!     let text = std::str::from_utf8(ctx.input("text")?)?;
//!     let mut counts = BTreeMap::<&str, u64>::new();
//!     for word in text.split_whitespace() {
//!         *counts.entry(word).or_default() += 1;
//!     }
//!     ctx.output_json("counts", &counts)
//! }
//!
//! /// Upper-cases input `text` (ASCII) into output `text`, in place in the arena.
//! fn upper(ctx: &mut Context<'_>) -> Result<(), Error> {
//!     let text = ctx.input("text")?;
//!     ctx.output_with("text", text.len(), |buf| {
//!         buf.copy_from_slice(text);
//!         buf.make_ascii_uppercase();
//!     })
//! }
//!
//! fn main() {
//!     faasflow_sdk::serve(Pack::new("words").function("count", count).function("upper", upper))
//! }
//! ```
//! A workflow then names the pack on its functions (`pack: words`) and wires the inputs and
//! outputs by name (`inputs: {text: input.text}`, `count.counts`). Run by hand, the binary
//! says it is a pack and exits; `--list` prints its functions.
//!
//! The functions are tested without a daemon with [`testing::TestCall`], which runs them on
//! the same [`Context`] in an arena of the test process:
//! ```
//! # use faasflow_sdk::{Context, Error};
//! # fn upper(ctx: &mut Context<'_>) -> Result<(), Error> {
//! #     let text = ctx.input("text")?;
//! #     ctx.output_with("text", text.len(), |buf| { buf.copy_from_slice(text); buf.make_ascii_uppercase(); })
//! # }
//! let outcome = faasflow_sdk::testing::TestCall::new("upper").input("text", "abc").run(upper)?;
//! assert_eq!(outcome.output("text"), Some(&b"ABC"[..]));
//! # Ok::<(), Error>(())
//! ```
//!
//! # What a function can count on
//! - Inputs are immutable for the whole call; [`Context::input`] borrows them for as long as
//!   the call runs (see [`Context`] for why that is sound over shared memory).
//! - A function returning `Err` fails the call with the error's message; a panic is caught and
//!   fails the call as *panicked* with the panic's message. Either way its outputs are
//!   discarded. Messages longer than 8 KiB are cut.
//! - Calls of one instance may run at the same time on several threads: functions must be
//!   `Send + Sync`, and shared state needs its own synchronisation.
//! - An output that fits the room the daemon reserved for it costs no round trip to the
//!   daemon; a larger (or undeclared) one asks the daemon for room first.

mod context;
mod error;
mod log;
mod pack;
mod program;
mod runtime;
pub mod synthetic;
pub mod testing;

pub use context::Context;
pub use error::Error;
pub use pack::Pack;
pub use program::{serve, serve_with_args};
pub use runtime::{ServeError, serve_on};
