//! Control frames come from another process: any bytes either fail to decode with a typed
//! error or decode to a frame that encodes back to exactly the same bytes. Frames that fit
//! are also carried through a ring first, which must deliver them unchanged.
#![no_main]

use faasflow_shm::Ring;
use faasflow_shm::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ring = Ring::new_local(4096).expect("valid capacity");
    let (mut p, mut c) = (ring.clone_view().into_producer(), ring.into_consumer());
    let mut buf = vec![0u8; c.max_frame_len()];
    let bytes = if p.push(data).is_ok() {
        let n = c.pop(&mut buf).expect("a frame we pushed").expect("not empty");
        assert_eq!(&buf[..n], data);
        &buf[..n]
    } else {
        data
    };
    if let Ok(frame) = Frame::decode(bytes) {
        let mut again = Vec::new();
        frame.encode(&mut again).expect("a decoded frame encodes");
        assert_eq!(again, bytes);
    }
});
