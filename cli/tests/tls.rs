//! TLS on every connection of a local cluster (`faasflow up`), over real sockets: the token
//! never crosses in clear, a client without the cluster CA's trust is told why, a plain HTTP
//! client is told to use `https://`, a daemon takes calls only from the planner, and a
//! worker is who its certificate says.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use faasflow_proto::v1 as pb;
use faasflow_proto::v1::daemon_client::DaemonClient;
use faasflow_proto::v1::planner_client::PlannerClient;
use faasflow_rpc::auth::Attach;
use faasflow_rpc::channel::Transport;
use faasflow_rpc::tls::ALPN_H2;

mod support;

use support::local::{Cluster, faasflow, rt, text, unique_dir};

/// A TCP forwarder from a port of its own to `to`, keeping every byte clients sent.
fn recording_proxy(to: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&to) else { continue };
            let (mut c_read, mut s_write) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
            let (mut s_read, mut c_write) = (server, client);
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    kept.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

#[test]
fn every_connection_is_tls_and_a_client_without_the_cluster_ca_is_told_why() {
    let c = Cluster::up("tls", 2, &["--heartbeat-ms", "200"]);
    let certs = c.certs();
    let ca = certs.join("ca.pem");
    let token_file = certs.join("token");
    let (ca, token_file) = (ca.to_str().expect("utf-8"), token_file.to_str().expect("utf-8"));

    // A client with the cluster's CA, through a proxy that keeps what it sends: the call
    // works, and the token is nowhere in the bytes on the wire.
    let (proxy, seen) = recording_proxy(c.planner());
    let o = faasflow(&["status", "--planner", &proxy, "--ca", ca, "--token-file", token_file]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("worker-0"), "{}", text(&o.stdout));
    let wire = seen.lock().expect("lock").clone();
    assert!(wire.len() > 100, "the call crossed the proxy ({} bytes)", wire.len());
    assert_eq!(wire[0], 0x16, "the client opened with a TLS handshake");
    let token = c.token_text();
    assert!(
        !wire.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token crossed in clear"
    );

    // Without the CA: told what to pass, before anything is sent.
    let o = faasflow(&["status", "--planner", &c.planner(), "--token-file", token_file]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("needs the cluster CA's certificate to check it by: pass --ca FILE"),
        "{}",
        text(&o.stderr)
    );
    // Another cluster's CA: the planner's certificate is refused, saying why.
    let other = unique_dir("tls-other");
    let o = faasflow(&[
        "cluster",
        "init",
        "--nodes",
        "1",
        "--dir",
        other.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let other_ca = other.join("ca.pem");
    let o = faasflow(&[
        "status",
        "--planner",
        &c.planner(),
        "--ca",
        other_ca.to_str().expect("utf-8"),
        "--token-file",
        token_file,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("certificate is not signed by the cluster CA this client trusts"),
        "{}",
        text(&o.stderr)
    );
    // Plain TCP to the TLS port, asked for: refused (nothing answers in clear).
    let o = faasflow(&[
        "status",
        "--planner",
        &c.planner(),
        "--insecure-loopback",
        "--token-file",
        token_file,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("the planner may serve TLS: call it without --insecure-loopback"),
        "{}",
        text(&o.stderr)
    );
    // --insecure-loopback only to this host.
    for elsewhere in ["10.1.2.3:5300", "127.0.0.1:80@example.com", "localhost.example.com:80"] {
        let o = faasflow(&["status", "--planner", elsewhere, "--insecure-loopback"]);
        assert_eq!(o.status.code(), Some(2), "{elsewhere}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("is not on this host"), "{}", text(&o.stderr));
    }

    // Plain HTTP to the TLS port: a JSON error saying to use https://.
    let mut s = TcpStream::connect(c.planner()).expect("connect");
    s.write_all(b"GET /v1/workflows HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");

    let rt = rt();
    // A daemon takes calls only from the planner: with the CA and the token but no
    // node certificate, a call is refused.
    let w0 = c.worker("worker-0")["grpc_addr"].as_str().expect("addr").to_owned();
    let person = Transport::Tls(c.tls(None, ALPN_H2));
    let channel = rt.block_on(person.connect(&w0, "worker-0")).expect("TLS to the daemon");
    let mut daemon = DaemonClient::with_interceptor(channel, Attach::new(Some(c.token())));
    let e = rt
        .block_on(daemon.status(pb::StatusRequest {}))
        .expect_err("a person's call to a daemon");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("only from the planner"), "{}", e.message());
    // …nor from another worker (workers speak to each other over the peer transport).
    let as_w1 = Transport::Tls(c.tls(Some("worker-1"), ALPN_H2));
    let channel = rt.block_on(as_w1.connect(&w0, "worker-0")).expect("TLS to the daemon");
    let mut daemon = DaemonClient::with_interceptor(channel, Attach::new(Some(c.token())));
    let e = rt
        .block_on(daemon.status(pb::StatusRequest {}))
        .expect_err("a worker's call to another daemon");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("not from node `worker-1`"), "{}", e.message());
    // Plain gRPC to a daemon's port gets nothing.
    let channel = rt.block_on(Transport::Plain.connect(&w0, "worker-0"));
    let answered = match channel {
        Ok(channel) => rt
            .block_on(
                DaemonClient::with_interceptor(channel, Attach::new(Some(c.token()))).status(pb::StatusRequest {}),
            )
            .is_ok(),
        Err(_) => false,
    };
    assert!(!answered, "a daemon answered plain gRPC");
    // The daemon's certificate names it: a client expecting another node refuses it.
    let e = rt
        .block_on(person.connect(&w0, "worker-1"))
        .expect_err("worker-0 answering as worker-1");
    assert!(
        format!("{e:?}").contains("a certificate that is not node `worker-1`'s"),
        "{e:?}"
    );

    // A worker is who its certificate says: worker-0's certificate cannot register worker-1.
    let as_w0 = Transport::Tls(c.tls(Some("worker-0"), ALPN_H2));
    let channel = rt
        .block_on(as_w0.connect(&c.planner(), "planner"))
        .expect("TLS to the planner");
    let mut planner = PlannerClient::with_interceptor(channel, Attach::new(Some(c.token())));
    let e = rt
        .block_on(planner.register_worker(pb::RegisterWorkerRequest {
            name: "worker-1".into(),
            grpc_addr: w0.clone(),
            ..Default::default()
        }))
        .expect_err("impersonation");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("cannot speak as `worker-1` with the certificate of node `worker-0`"),
        "{}",
        e.message()
    );
    // Nor send worker-1's heartbeats.
    let e = rt
        .block_on(planner.heartbeat(pb::HeartbeatRequest {
            name: "worker-1".into(),
            ..Default::default()
        }))
        .expect_err("impersonation");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // Plain TCP is refused towards any address not on this host, whatever the client asks.
    let e = rt
        .block_on(Transport::Plain.connect("127.0.0.1:80@example.com:80", "planner"))
        .expect_err("a user part hiding another host");
    assert!(format!("{e:?}").contains("no user part"), "{e:?}");
    // …and the real worker-1 is still registered, where it was.
    let m = rt
        .block_on(c.planner_client(&rt).metrics(pb::MetricsRequest {}))
        .expect("metrics")
        .into_inner();
    let w1 = m.registered.iter().find(|w| w.name == "worker-1").expect("worker-1");
    assert!(!w1.lost);
    assert_eq!(w1.grpc_addr, c.worker("worker-1")["grpc_addr"].as_str().expect("addr"));
    let _ = std::fs::remove_dir_all(&other);
}
