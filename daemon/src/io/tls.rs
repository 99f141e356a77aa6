//! The cluster's certificates and TLS settings, which live in `faasflow_rpc::tls` (the planner
//! and the clients use them too); re-exported here for the peer transport.

pub use faasflow_rpc::tls::*;
