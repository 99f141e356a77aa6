//! faasflow's per-worker daemon. It drives the invocation [`engine`] (which lives in the planner crate, so that MasterSP's central engine runs the same code): a sans-IO state
//! machine that installs compiled workflows, keeps per-invocation state, and says which
//! function to trigger, cancel, or which object to release; and the bookkeeping of FaaStore's
//! arena ([`store`]), which gives objects their place in shared memory; and the peer transport
//! between daemons ([`io`]: QUIC with mutual TLS from the cluster CA).
//!
//! What it does not do: the engine performs no I/O, reads no clock and draws no randomness of
//! its own. Time is passed in (`now`), retry jitter comes from a generator seeded by
//! [`engine::EngineConfig::seed`], and function outputs are opaque handles
//! ([`engine::ObjectRef`]): the engine never sees their bytes, only the parsed JSON of small
//! `json`/`list` outputs that conditions and foreach lists need. Starting instances, moving
//! bytes and freeing arena memory belong to the drivers that act on its [`engine::Action`]s.
#![forbid(unsafe_code)]

pub use faasflow_planner::engine;
pub mod container;
pub mod io;
mod net;
pub mod pool;
pub use faasflow_planner::report;
pub mod runtime;
pub mod service;
pub mod store;

pub use engine::{Action, Engine, EngineConfig, EngineError, Event, InputValue, ObjectRef};
