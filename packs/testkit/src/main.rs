//! The `faasflow-pack-testkit` executable: serves the testkit pack to a faasflow daemon.
//!
//! `faasflow-pack-testkit --rogue corrupt-ring` instead plays an instance that breaks the
//! protocol on purpose, for the daemon's fault tests: it completes the handshake, then
//! corrupts the index of its own instance → daemon ring and waits.
#![forbid(unsafe_code)]

use faasflow_shm::Region;
use faasflow_shm::handshake::{self, Hello, INSTANCE_FD_ENV, PROTOCOL_VERSION, Welcome};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--rogue", "corrupt-ring", "--list"] => println!("f"),
        ["--rogue", "corrupt-ring"] => corrupt_ring(),
        _ => faasflow_sdk::serve(faasflow_pack_testkit::pack()),
    }
}

fn corrupt_ring() {
    let fd = std::env::var(INSTANCE_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("started by a daemon");
    let mut sock = handshake::inherited_socket(fd).expect("the daemon's socket");
    Hello {
        version: PROTOCOL_VERSION,
        pack: "rogue".into(),
        pid: std::process::id(),
        functions: vec!["f".into()],
    }
    .send(&mut sock)
    .expect("hello");
    let (welcome, files) = Welcome::recv(&mut sock).expect("welcome");
    let rings = Region::open(files.rings).expect("rings");
    // The ring's tail index (line 1 of its header) far beyond anything pushed.
    assert!(rings.copy_in(welcome.to_daemon + 64, &u64::MAX.to_le_bytes()));
    handshake::send_ready(&mut sock).expect("ready");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
