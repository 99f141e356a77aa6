//! The `faasflow-pack-example` executable: serves the example pack to a faasflow daemon.
#![forbid(unsafe_code)]

fn main() {
    faasflow_sdk::serve(faasflow_pack_example::pack())
}
