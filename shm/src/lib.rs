//! The shared-memory protocol between the faasflow daemon and its pack instances (separate
//! processes): shared [`Region`]s (memfd + `memmap2`), the lock-free single-producer
//! single-consumer [`ring`] that carries control frames through them (one ring each way per
//! instance), and the control [`frame`] codec.
//!
//! This crate knows nothing of the daemon or the sdk (both depend on it), of workflows, or of
//! how objects are allocated in the arena; it performs no I/O other than creating and mapping
//! memory and the futex calls of waiting. Everything read from shared memory comes from a
//! process that may be buggy or hostile: it is validated and yields typed errors, never a panic
//! or undefined behaviour.

pub mod doorbell;
pub mod frame;
#[cfg(not(loom))]
pub mod handshake;
#[cfg(not(loom))]
mod region;
pub mod ring;
pub mod stderr;
mod sync;

pub use doorbell::Doorbell;
#[cfg(not(loom))]
pub use region::Region;
pub use ring::{Consumer, Producer, Ring};

#[cfg(all(test, loom))]
mod loom_tests;
