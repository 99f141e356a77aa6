//! The `faasflow-pack-synthetic` executable: FaaSFlow's synthetic body
//! ([`faasflow_sdk::synthetic`]), the same one `faasflow __pack synthetic` serves, as a program
//! of its own so that `cargo xtask images` can put it in an image for functions without a pack
//! that run in containers.
#![forbid(unsafe_code)]

fn main() {
    faasflow_sdk::serve(faasflow_sdk::synthetic::pack())
}
