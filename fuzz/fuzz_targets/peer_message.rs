//! Daemons exchange control frames and object headers over QUIC; the peer may be buggy or
//! compromised. Any bytes, read as a frame's body, as a stream of frames and as an object's
//! header, either fail to decode with a typed error or decode to values that encode back to
//! the same bytes (`faasflow_fuzz::check_peer_bytes`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| faasflow_fuzz::check_peer_bytes(data));
