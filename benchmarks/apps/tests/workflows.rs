//! The four workflows of `benchmarks/workflows/` run end to end through the real `faasflow`
//! binary and this pack, at sizes smaller than the benchmark's; each result is checked
//! against the crate's plain functions run on the same generated input.
//!
//! Needs `faasflow` next to the pack's binary: `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::Command;

use faasflow_pack_apps::rng::checksum;
use faasflow_pack_apps::{image, markdown, sentiment, video, words};
use serde_json::{Value, json};

const PACK: &str = env!("CARGO_BIN_EXE_faasflow-pack-apps");

/// `faasflow`, in the same target directory as the pack.
fn faasflow() -> PathBuf {
    let bin = Path::new(PACK).with_file_name("faasflow");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (same profile and target directory) \
         before running these tests",
        bin.display()
    );
    bin
}

fn workflow(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows").join(file)
}

/// Runs `file` once with `input` and returns its JSON report, which must say `ok`.
fn run(file: &str, input: Value) -> Value {
    let out = Command::new(faasflow())
        .arg("run")
        .arg(workflow(file))
        .args(["--input", &input.to_string(), "--report", "json", "--arena-mib", "256"])
        .arg("--pack")
        .arg(format!("apps={PACK}"))
        .output()
        .expect("start faasflow");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{file}: no report (exit status {}); stderr:\n{stderr}", out.status));
    let report: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: the report is not JSON ({e}): {line}"));
    assert_eq!(
        report["status"], "ok",
        "{file} with {input} failed: {}\nstderr:\n{stderr}",
        report["error"]
    );
    assert!(
        out.status.success(),
        "{file}: exit status {}; stderr:\n{stderr}",
        out.status
    );
    report
}

/// The attempts of step `name` that ran (not skipped).
fn ran(report: &Value, name: &str) -> usize {
    functions(report, name).filter(|f| f["skipped"] == false).count()
}

/// Whether step `name` was reported as skipped (and never ran).
fn skipped(report: &Value, name: &str) -> bool {
    let all: Vec<&Value> = functions(report, name).collect();
    !all.is_empty() && all.iter().all(|f| f["skipped"] == true)
}

fn functions<'a>(report: &'a Value, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    report["functions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(move |f| f["name"] == name)
}

#[test]
fn word_count_totals_what_the_generator_wrote() {
    let (seed, bytes, parts) = (11, 400_000, 8);
    let report = run("wordcount.yaml", json!({"seed": seed, "bytes": bytes, "parts": parts}));
    assert_eq!(ran(&report, "count"), parts);
    let texts = words::generate_texts(seed, bytes, parts);
    let expected = words::merge_counts(texts.iter().map(|t| words::count_words(t)));
    let total: u64 = texts.iter().map(|t| words::count_words(t).values().sum::<u64>()).sum();
    let result = &report["output"]["result"];
    assert_eq!(result["words"], total);
    assert_eq!(result["distinct"], expected.distinct);
    assert_eq!(result, &serde_json::to_value(&expected).unwrap());
    assert_eq!(result["top"][0][0], "the");
}

#[test]
fn file_processing_converts_and_scores_the_generated_document() {
    let (seed, bytes) = (5, 2_000_000);
    let report = run("fileprocessing.yaml", json!({"seed": seed, "bytes": bytes}));
    for step in ["start", "conversion", "sentiment", "upload"] {
        assert_eq!(ran(&report, step), 1, "{step}");
    }
    let doc = markdown::generate_document(seed, bytes);
    let html = markdown::to_html(&doc);
    let summary = &report["output"]["summary"];
    assert_eq!(summary["html_bytes"], html.len());
    assert_eq!(summary["checksum"], checksum(html.as_bytes()));
    assert_eq!(
        summary["sentiment"],
        serde_json::to_value(sentiment::score(&doc)).unwrap()
    );
}

fn clip(seed: u64, frames: u32) -> Vec<u8> {
    let dims = video::Dims {
        width: 64,
        height: 48,
        frames,
    };
    let mut out = vec![0; dims.rgb_len()];
    video::render(seed, dims, &mut out);
    out
}

#[test]
fn a_long_video_is_split_and_transcoded_in_parallel() {
    let (seed, frames, segment) = (3, 60, 16);
    let report = run(
        "video.yaml",
        json!({"seed": seed, "frames": frames, "width": 64, "height": 48, "segment": segment}),
    );
    assert_eq!(report["output"]["meta"]["long"], true);
    assert_eq!(
        (ran(&report, "split"), ran(&report, "transcode"), ran(&report, "merge")),
        (1, 4, 1)
    );
    assert!(skipped(&report, "simple_process"));

    let c = clip(seed, frames);
    let (dims, _) = video::parse_rgb(&c).unwrap();
    let parts = video::plan_split(dims, segment);
    let mut chunks = vec![0; parts.iter().map(|p| p.len as usize).sum()];
    video::split_into(&c, &parts, &mut chunks).unwrap();
    let coded: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| video::transcode(video::chunk(&chunks, p).unwrap()).unwrap())
        .collect();
    let (_, expected) = video::merge(&coded.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
    assert_eq!(report["output"]["summary"], serde_json::to_value(&expected).unwrap());
    assert_eq!(expected.frames, frames);
}

#[test]
fn a_short_video_takes_the_simple_path() {
    let (seed, frames) = (4, 30);
    let report = run(
        "video.yaml",
        json!({"seed": seed, "frames": frames, "width": 64, "height": 48, "segment": null}),
    );
    assert_eq!(report["output"]["meta"]["long"], false);
    assert_eq!(ran(&report, "simple_process"), 1);
    for step in ["split", "transcode", "merge"] {
        assert!(skipped(&report, step), "{step} should be skipped");
    }
    let (_, expected) = video::simple_process(&clip(seed, frames)).unwrap();
    assert_eq!(report["output"]["summary"], serde_json::to_value(&expected).unwrap());
    // A bytes output is shown as a string when it is short UTF-8, else as its size.
    let preview = match &report["output"]["preview"] {
        Value::String(s) => s.len() as u64,
        v => v["bytes"].as_u64().unwrap_or_else(|| panic!("preview: {v}")),
    };
    assert_eq!(preview, video::preview(&clip(seed, frames)).unwrap().len() as u64);
}

/// The recognizer's image for `input`, as `upload` generates it.
fn recognizer_image(seed: u64, content: image::Content, text: &str) -> image::Image {
    image::generate(seed, 320, 240, content, text).unwrap()
}

fn recognize(seed: u64, content: &str, text: &str) -> Value {
    run(
        "recognizer.yaml",
        json!({"seed": seed, "width": 320, "height": 240, "content": content, "text": text}),
    )
}

/// Which task pixelated the image (`mosaic`, `mosaic_text`), or `None`; checks that the
/// published image is that task's output.
fn pixelated_by(report: &Value, img: &image::Image) -> Option<&'static str> {
    let by: Vec<&'static str> = ["mosaic", "mosaic_text"]
        .into_iter()
        .filter(|t| ran(report, t) == 1)
        .collect();
    for t in ["mosaic", "mosaic_text"] {
        assert!(by.contains(&t) || skipped(report, t), "{t} neither ran nor was skipped");
    }
    assert!(by.len() <= 1, "both mosaics ran: {by:?}");
    assert_eq!(ran(report, "publish"), 1, "publish always runs");
    let summary = &report["output"]["summary"];
    let ppm = img.to_ppm();
    let published = match by.first() {
        Some(_) => image::mosaic(image::parse_ppm(&ppm).unwrap(), 16).to_ppm(),
        None => ppm,
    };
    assert_eq!(summary["checksum"], checksum(&published));
    assert_eq!(summary["mosaic"], !by.is_empty());
    by.first().copied()
}

#[test]
fn an_illegal_image_is_pixelated_without_reading_its_text() {
    for (seed, content, flagged) in [
        (1, image::Content::Adult, "adult"),
        (2, image::Content::Violence, "violence"),
    ] {
        let text = "el hombre lleva una pistola";
        let report = recognize(seed, flagged, text);
        assert_eq!(report["output"][flagged]["illegal"], true, "{flagged}");
        assert_eq!(
            pixelated_by(&report, &recognizer_image(seed, content, text)),
            Some("mosaic")
        );
        for step in ["extract", "translate", "word_censor"] {
            assert!(skipped(&report, step), "{step} should be skipped for an illegal image");
        }
        assert_eq!(report["output"]["censorship"], Value::Null);
    }
}

#[test]
fn a_legal_image_with_a_banned_word_in_its_text_is_pixelated() {
    let text = "el hombre lleva una pistola y una bomba";
    let report = recognize(3, "none", text);
    assert_eq!(report["output"]["adult"]["illegal"], false);
    assert_eq!(report["output"]["violence"]["illegal"], false);
    for step in ["extract", "translate", "word_censor"] {
        assert_eq!(ran(&report, step), 1, "{step}");
    }
    assert_eq!(report["output"]["censorship"]["banned"], json!(["gun", "bomb"]));
    let img = recognizer_image(3, image::Content::None, text);
    assert_eq!(pixelated_by(&report, &img), Some("mosaic_text"));
}

#[test]
fn a_legal_image_with_a_clean_text_is_published_as_it_is() {
    let text = "el nino juega en el parque con su perro";
    let report = recognize(4, "none", text);
    assert_eq!(report["output"]["censorship"]["censored"], false);
    let img = recognizer_image(4, image::Content::None, text);
    assert_eq!(pixelated_by(&report, &img), None);
}
