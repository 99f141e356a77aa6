//! Plans come from the network: any bytes either fail to decode, are rejected by
//! `plan_from_proto`, or are accepted whole — and then `plan_to_proto` gives back the same
//! message (`faasflow_fuzz::check_plan_message`).
#![no_main]

use faasflow_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = pb::Plan::decode(data) {
        faasflow_fuzz::check_plan_message(&p);
    }
});
