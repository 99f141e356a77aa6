//! The `faasflow-pack-testkit` executable: serves the testkit pack to a faasflow daemon.
#![forbid(unsafe_code)]

fn main() {
    faasflow_sdk::serve(faasflow_pack_testkit::pack())
}
