//! Writes the seed corpus of the `plan_proto` target: encoded plans of the docs examples and
//! a few FaaSFlow benchmarks, in both modes. Run it after changing the wire format:
//!
//! ```sh
//! cd fuzz && cargo test --test seeds -- --ignored
//! ```

use std::path::Path;

use faasflow_planner::load::load_str;
use faasflow_planner::{ClusterView, Mode, PlannerConfig, partition, plan_to_proto};
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
