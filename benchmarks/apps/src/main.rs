//! The `faasflow-pack-apps` executable: serves the `apps` pack (FaaSFlow's application
//! workloads) to a faasflow daemon.
#![forbid(unsafe_code)]

fn main() {
    faasflow_sdk::serve(faasflow_pack_apps::pack())
}
