//! An instance's hello comes from a process that may be buggy or hostile: any bytes either fail
//! to decode with a typed error or decode to a hello that encodes back to the same bytes.
#![no_main]

use faasflow_shm::handshake::Hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = Hello::decode(data) {
        assert_eq!(hello.encode().expect("a decoded hello encodes"), data);
    }
});
