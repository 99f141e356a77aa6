//! Writes the seed corpora that are made rather than copied, and checks that the committed
//! seeds still reach their targets:
//!
//! - `plan_proto`: encoded plans of the docs examples and a few FaaSFlow benchmarks, in both
//!   modes;
//! - `peer_message`: control frames and an object header as daemons send them;
//! - `faasflow_import`: FaaSFlow's flat and hierarchical example and benchmark files from
//!   `tests/fixtures/faasflow-v1` (without the four generated workflows of 39–134 KB, longer
//!   than the target's largest input).
//!
//! Rewrite them after changing a wire format or the fixtures:
//!
//! ```sh
//! cd fuzz && cargo test --test seeds -- --ignored
//! ```

use std::path::{Path, PathBuf};

use faasflow_daemon::io::message::{
    Caught, ControlMessage, Done, FRAME_PREFIX, Failed, ObjectHeader, OutputRef, StagedInput, Start,
};
use faasflow_planner::load::load_str;
use faasflow_core::{ClusterView, Mode, PlannerConfig};
use faasflow_planner::partition;
use faasflow_rpc::plan_to_proto;
use prost::Message as _;

#[test]
#[ignore = "writes fuzz/seeds/plan_proto; run by hand"]
fn write_plan_proto_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("seeds/plan_proto");
    std::fs::create_dir_all(&out).unwrap();
    let mut sources: Vec<(String, String)> = Vec::new();
    let wdl = root.join("seeds/wdl");
    let mut names: Vec<_> = std::fs::read_dir(&wdl)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with("docs-wdl-")
                || [
                    "video_flat",
                    "wordcount_flat",
                    "illgal_recognizer_flat",
                    "examples_foreach_workflow",
                ]
                .iter()
                .any(|k| n.contains(k))
        })
        .collect();
    names.sort();
    for name in names {
        sources.push((name.clone(), std::fs::read_to_string(wdl.join(&name)).unwrap()));
    }
    let mut written = 0;
    for (name, text) in &sources {
        let stem = name.trim_end_matches(".yaml");
        let wf = load_str(text, name, stem).unwrap_or_else(|e| panic!("{e}")).workflow;
        for (mode, workers) in [(Mode::WorkerSp, 3), (Mode::MasterSp, 2)] {
            let cluster = ClusterView::uniform(workers, 64);
            let cfg = PlannerConfig {
                mode,
                allow_overcommit: true,
                ..PlannerConfig::default()
            };
            let plan = partition(&wf, &cluster, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
            let bytes = plan_to_proto(&wf, &plan, &cluster).encode_to_vec();
            std::fs::write(out.join(format!("{stem}-{}.pb", mode.as_str())), bytes).unwrap();
            written += 1;
        }
    }
    eprintln!("wrote {written} plans into {}", out.display());
}

/// Control messages as the daemons of a 3-worker cluster send them while running FaaSFlow's
/// `video` benchmark (names from its flat_workflow.yaml), one of each kind and shape.
fn peer_messages() -> Vec<(&'static str, ControlMessage)> {
    let record = br#"{"functions":[{"node":3,"function":"split","worker":1,"start_us":1200,"end_us":48210,"cold":false}],"edges":[{"from":3,"to":4,"bytes":1048576,"tier":"shm","us":38}],"data_us":512,"spills":0}"#;
    vec![
        (
            "start",
            ControlMessage::Start(Start {
                workflow: "video".into(),
                version: 3,
                invocation: 0x0001_0000_0000_002a,
                origin_us: 1_767_225_600_000_000,
                input: br#"{"video_name":"min_1.mp4","segment_time":10,"target_type":"avi","output_prefix":"out","user_name":"u1"}"#.to_vec(),
                staged: Vec::new(),
            }),
        ),
        (
            "start-staged",
            ControlMessage::Start(Start {
                workflow: "wordcount".into(),
                version: 1,
                invocation: 7,
                origin_us: 1_767_225_600_250_000,
                input: br#"{"filename":null}"#.to_vec(),
                staged: vec![StagedInput {
                    name: "filename".into(),
                    object: 0x0002_0000_0000_0001,
                    len: 4 << 20,
                }],
            }),
        ),
        (
            "done",
            ControlMessage::Done(Done {
                invocation: 0x0001_0000_0000_002a,
                node: 3,
                element: None,
                outputs: vec![
                    OutputRef {
                        name: "split_keys".into(),
                        object: 0x0001_0000_0000_0101,
                        len: 29,
                        json: Some(br#"["seg0","seg1","seg2","seg3"]"#.to_vec()),
                        remote: false,
                    },
                    OutputRef {
                        name: "content".into(),
                        object: 0x0001_0000_0000_0102,
                        len: 1 << 20,
                        json: None,
                        remote: true,
                    },
                ],
                record: record.to_vec(),
            }),
        ),
        (
            "done-element",
            ControlMessage::Done(Done {
                invocation: 0x0001_0000_0000_002a,
                node: 4,
                element: Some(2),
                outputs: vec![OutputRef {
                    name: "gif".into(),
                    object: 0x0003_0000_0000_0007,
                    len: 65536,
                    json: None,
                    remote: false,
                }],
                record: b"{}".to_vec(),
            }),
        ),
        (
            "failed",
            ControlMessage::Failed(Failed {
                invocation: 0x0001_0000_0000_002a,
                error: "task `transcode` (foreach element 2): the function exited with status 1 after 3 attempts".into(),
                lost_worker: None,
            }),
        ),
        (
            "failed-lost",
            ControlMessage::Failed(Failed {
                invocation: 0x0001_0000_0000_002b,
                error: "worker `worker-2` was lost: timed out".into(),
                lost_worker: Some("worker-2".into()),
            }),
        ),
        (
            "caught",
            ControlMessage::Caught(Caught {
                invocation: 0x0001_0000_0000_002c,
                node: 3,
                element: Some(1),
                failure: br#"{"step":"fetch","element":1,"error":"boom","kind":"crash","attempts":3}"#.to_vec(),
                record: b"{}".to_vec(),
            }),
        ),
    ]
}

fn frame(msg: &ControlMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf).unwrap();
    buf
}

#[test]
#[ignore = "writes fuzz/seeds/peer_message; run by hand"]
fn write_peer_message_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/peer_message");
    std::fs::create_dir_all(&out).unwrap();
    let messages = peer_messages();
    let mut stream = Vec::new();
    for (name, msg) in &messages {
        let f = frame(msg);
        std::fs::write(out.join(format!("{name}.frame")), &f).unwrap();
        std::fs::write(out.join(format!("{name}.body")), &f[FRAME_PREFIX..]).unwrap();
        stream.extend_from_slice(&f);
    }
    // A control stream as one connection carries it: every message, back to back.
    std::fs::write(out.join("stream.frames"), &stream).unwrap();
    // An object's stream: its header and the first bytes of the object.
    let mut object = ObjectHeader {
        invocation: 0x0001_0000_0000_002a,
        object: 0x0001_0000_0000_0102,
        len: 1 << 20,
    }
    .encode()
    .to_vec();
    object.extend_from_slice(b"\x00\x00\x00\x18ftypmp42");
    std::fs::write(out.join("object.header"), &object).unwrap();
    eprintln!("wrote {} files into {}", 2 * messages.len() + 2, out.display());
}

/// The FaaSFlow workflow files the `faasflow_import` target starts from, with the name each
/// gets in its seed directory (the path under tests/fixtures, `/` made `_`, as in `wdl`).
fn faasflow_files() -> Vec<(PathBuf, String)> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/faasflow-v1");
    let mut files = Vec::new();
    let mut dirs = vec![fixtures.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().unwrap().to_str().unwrap().contains("workflow")
                && !path.starts_with(fixtures.join("benchmark/generator"))
            {
                let rel = path
                    .strip_prefix(&fixtures)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .replace('/', "_");
                files.push((path, format!("faasflow-v1_{rel}")));
            }
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    files
}

#[test]
#[ignore = "writes fuzz/seeds/faasflow_import; run by hand"]
fn write_faasflow_import_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/faasflow_import");
    std::fs::create_dir_all(&out).unwrap();
    let files = faasflow_files();
    for (path, name) in &files {
        std::fs::copy(path, out.join(name)).unwrap();
    }
    eprintln!("copied {} files into {}", files.len(), out.display());
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

/// The committed seeds of `peer_message` are what the codec sends today (else rerun the
/// writer above): each decodes, and encodes back to the same bytes.
#[test]
fn peer_message_seeds_decode() {
    let seeds = seeds("peer_message");
    assert_eq!(seeds.len(), 2 * peer_messages().len() + 2);
    for (name, bytes) in &seeds {
        let ok = match name.rsplit_once('.').unwrap().1 {
            "body" => ControlMessage::decode(bytes).is_ok(),
            "frame" | "frames" => {
                let mut rest = bytes.as_slice();
                while let Ok(Some((_, used))) = ControlMessage::decode_frame(rest) {
                    rest = &rest[used..];
                }
                rest.is_empty()
            }
            "header" => ObjectHeader::decode(bytes.first_chunk().unwrap()).is_ok(),
            other => panic!("{name}: unknown kind of seed `{other}`"),
        };
        assert!(ok, "the seed {name} no longer decodes: rerun the seed writer");
        faasflow_fuzz::check_peer_bytes(bytes);
    }
}

/// The committed seeds of `faasflow_import` are the fixtures, and each imports in its form.
#[test]
fn faasflow_import_seeds_import() {
    let seeds = seeds("faasflow_import");
    let files = faasflow_files();
    assert_eq!(
        seeds.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        files.iter().map(|(_, n)| n).collect::<Vec<_>>(),
        "the seeds are not the fixtures: rerun the seed writer"
    );
    for ((name, bytes), (path, _)) in seeds.iter().zip(&files) {
        assert_eq!(bytes, &std::fs::read(path).unwrap(), "{name} differs from its fixture");
        let text = std::str::from_utf8(bytes).unwrap();
        let got = faasflow_fuzz::check_faasflow_text(text, bytes[0]);
        let flat = name.contains("flat_workflow");
        assert!(
            if flat { got.flat } else { got.hierarchical },
            "{name} does not import as a {} file",
            if flat { "flat" } else { "hierarchical" }
        );
    }
}
