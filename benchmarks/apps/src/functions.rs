//! The pack's functions: each reads its inputs, calls the plain code of its workload and
//! writes its outputs. Inputs the workflow may leave out (seeds, sizes, switches) take the
//! defaults below, which are FaaSFlow's data sizes.
//!
//! A number given in the invocation's input (`--input '{"seed": 7}'`) arrives as its JSON
//! text, a string as its UTF-8 bytes. A workflow's declared inputs must all be given, so
//! `null` stands for "the default" (as does an input the call does not have at all).

use std::ops::RangeInclusive;

use faasflow_sdk::{Context, Error};
use serde::{Deserialize, Serialize};

use crate::image::{self, Content};
use crate::language::{self, Translation};
use crate::markdown;
use crate::rng::checksum;
use crate::sentiment::{self, Sentiment};
use crate::video::{self, Dims, Meta, Part};
use crate::words::{self, Counts};

/// Seed when the input gives none.
pub const DEFAULT_SEED: u64 = 1;

/// Word count: bytes of text in all (FaaSFlow: 3.4 MB).
pub const WORDCOUNT_BYTES: u64 = 3_400_000;
/// Word count: texts (FaaSFlow: 8).
pub const WORDCOUNT_PARTS: u64 = 8;
/// File processing: bytes of Markdown (FaaSFlow: 29.6 MB).
pub const DOCUMENT_BYTES: u64 = 29_600_000;
/// Largest text or document generated, bytes.
pub const MAX_TEXT_BYTES: u64 = 512 << 20;
/// Video: frames (3 s at 25 fps: a long clip).
pub const VIDEO_FRAMES: u64 = 75;
/// Video: frame width; 640×360 RGB frames make 75 frames 51.8 MB (FaaSFlow's split: 51.7 MB).
pub const VIDEO_WIDTH: u64 = 640;
/// Video: frame height.
pub const VIDEO_HEIGHT: u64 = 360;
/// Video: frames per chunk of `split` (75 frames make 4 chunks).
pub const VIDEO_SEGMENT: u64 = 20;
/// Recognizer: image width; 640×680 RGB is 1.3 MB (FaaSFlow: 1.3 MB).
pub const IMAGE_WIDTH: u64 = 640;
/// Recognizer: image height.
pub const IMAGE_HEIGHT: u64 = 680;
/// Recognizer: the caption when the input gives none (legal: nothing banned).
pub const DEFAULT_CAPTION: &str = "el nino juega en el parque con su perro";
/// Recognizer: the side of `mosaic`'s blocks, pixels.
pub const MOSAIC_BLOCK: usize = 16;

/// Input `name` when the call has it and it is neither absent nor `null`.
fn optional<'a>(ctx: &Context<'a>, name: &str) -> Result<Option<&'a [u8]>, Error> {
    if !ctx.input_names().any(|n| n == name) {
        return Ok(None);
    }
    Ok(ctx.input_opt(name)?.filter(|b| *b != b"null"))
}

/// The first bytes of `bytes` as text, for messages.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    if bytes.len() > 40 { format!("{text}…") } else { text }
}

/// Optional whole-number input `name` in `range` (a JSON number), else `default`.
fn number(ctx: &Context<'_>, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, Error> {
    let Some(bytes) = optional(ctx, name)? else {
        return Ok(default);
    };
    let value = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(64))
                .map(|f| f as u64)
        }),
        _ => None,
    };
    value.filter(|v| range.contains(v)).ok_or_else(|| {
        Error::new(format_args!(
            "input `{name}` must be a whole number from {} to {}, not `{}`",
            range.start(),
            range.end(),
            shown(bytes)
        ))
    })
}

/// Optional text input `name` (UTF-8), else `default`.
fn text<'a>(ctx: &Context<'a>, name: &str, default: &'a str) -> Result<&'a str, Error> {
    match optional(ctx, name)? {
        None => Ok(default),
        Some(bytes) => {
            std::str::from_utf8(bytes).map_err(|e| Error::new(format_args!("input `{name}` must be UTF-8 text: {e}")))
        }
    }
}

/// Input `name` as UTF-8 text.
fn utf8<'a>(ctx: &Context<'a>, name: &str) -> Result<&'a str, Error> {
    std::str::from_utf8(ctx.input(name)?).map_err(|e| Error::new(format_args!("input `{name}` is not UTF-8: {e}")))
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// Word count.

/// `wordcount_start`: inputs `seed`, `bytes` (default [`WORDCOUNT_BYTES`]), `parts` (default
/// [`WORDCOUNT_PARTS`]) → output `texts`, a list of `parts` strings of generated prose (see
/// [`words::generate_texts`]).
pub fn wordcount_start(ctx: &mut Context<'_>) -> Result<(), Error> {
    let seed = number(ctx, "seed", DEFAULT_SEED, 0..=u64::MAX)?;
    let bytes = number(ctx, "bytes", WORDCOUNT_BYTES, 1..=MAX_TEXT_BYTES)?;
    let parts = number(ctx, "parts", WORDCOUNT_PARTS, 1..=1024)?;
    ctx.output_json("texts", &words::generate_texts(seed, usize_of(bytes), usize_of(parts)))
}

/// `wordcount_count`: input `text` (one text: a foreach element) → output `counts`, a JSON
/// object from word to count.
pub fn wordcount_count(ctx: &mut Context<'_>) -> Result<(), Error> {
    let counts = words::count_words(utf8(ctx, "text")?);
    ctx.output_json("counts", &counts)
}

/// `wordcount_merge`: input `counts`, the list of every text's counts → output `result`, a
/// [`words::Summary`]: total, distinct words, the ten most frequent.
pub fn wordcount_merge(ctx: &mut Context<'_>) -> Result<(), Error> {
    let lists = ctx
        .inputs("counts")?
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            serde_json::from_slice::<Counts>(bytes).map_err(|e| {
                Error::new(format_args!(
                    "element {i} of input `counts` is not a word count (a JSON object of numbers): {e}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ctx.output_json("result", &words::merge_counts(lists))
}

// File processing.

/// `fileprocessing_start`: inputs `seed`, `bytes` (default [`DOCUMENT_BYTES`]) → output
/// `document`, a generated Markdown document (see [`markdown::generate_document`]).
pub fn fileprocessing_start(ctx: &mut Context<'_>) -> Result<(), Error> {
    let seed = number(ctx, "seed", DEFAULT_SEED, 0..=u64::MAX)?;
    let bytes = number(ctx, "bytes", DOCUMENT_BYTES, 1..=MAX_TEXT_BYTES)?;
    let document = markdown::generate_document(seed, usize_of(bytes));
    ctx.output("document", document.as_bytes())
}

/// `fileprocessing_conversion`: input `document` (Markdown) → output `html`.
pub fn fileprocessing_conversion(ctx: &mut Context<'_>) -> Result<(), Error> {
    let html = markdown::to_html(utf8(ctx, "document")?);
    ctx.output("html", html.as_bytes())
}

/// `fileprocessing_sentiment`: input `document` → output `score`, a [`Sentiment`].
pub fn fileprocessing_sentiment(ctx: &mut Context<'_>) -> Result<(), Error> {
    let score = sentiment::score(utf8(ctx, "document")?);
    ctx.output_json("score", &score)
}

/// What file processing's `upload` stores: the HTML's size and checksum, and the sentiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    /// Bytes of HTML.
    pub html_bytes: u64,
    /// FNV-1a of the HTML.
    pub checksum: String,
    /// The document's sentiment.
    pub sentiment: Sentiment,
}

/// `fileprocessing_upload`: inputs `html` and `score` → output `summary`, an [`Upload`].
pub fn fileprocessing_upload(ctx: &mut Context<'_>) -> Result<(), Error> {
    let html = ctx.input("html")?;
    let sentiment: Sentiment = ctx.input_json("score")?;
    let summary = Upload {
        html_bytes: html.len() as u64,
        checksum: checksum(html),
        sentiment,
    };
    ctx.output_json("summary", &summary)
}

// Video.

/// `video_upload`: inputs `seed`, `frames` (default [`VIDEO_FRAMES`]), `width`, `height`
/// (default [`VIDEO_WIDTH`] × [`VIDEO_HEIGHT`], multiples of 4) → outputs `video` (an `FVID`
/// clip rendered in place), `preview` (every third frame at half size) and `meta` (a
/// [`Meta`]; `long` when over 2 s).
pub fn video_upload(ctx: &mut Context<'_>) -> Result<(), Error> {
    let seed = number(ctx, "seed", DEFAULT_SEED, 0..=u64::MAX)?;
    let frames = number(ctx, "frames", VIDEO_FRAMES, 1..=100_000)?;
    let width = number(ctx, "width", VIDEO_WIDTH, 4..=4096)?;
    let height = number(ctx, "height", VIDEO_HEIGHT, 4..=4096)?;
    let dims = Dims {
        width: width as u32,
        height: height as u32,
        frames: frames as u32,
    };
    dims.check()
        .map_err(|e| Error::new(format_args!("inputs `frames`, `width`, `height`: {e}")))?;
    let preview = ctx.output_with("video", dims.rgb_len(), |buf| {
        video::render(seed, dims, buf);
        video::preview(buf)
    })??;
    ctx.output("preview", &preview)?;
    ctx.output_json("meta", &Meta::of(dims))
}

/// `video_split`: inputs `video` (an `FVID` clip) and `segment` (frames per chunk, default
/// [`VIDEO_SEGMENT`]) → outputs `chunks` (the chunks, each an `FVID` clip, one after the
/// other) and `parts` (a list of [`Part`]s: where each chunk is).
pub fn video_split(ctx: &mut Context<'_>) -> Result<(), Error> {
    let clip = ctx.input("video")?;
    let segment = number(ctx, "segment", VIDEO_SEGMENT, 1..=100_000)?;
    let (dims, _) = video::parse_rgb(clip).map_err(|e| Error::new(format_args!("input `video`: {e}")))?;
    let parts = video::plan_split(dims, segment as u32);
    let len = parts.iter().map(|p| p.len).sum::<u64>();
    ctx.output_with("chunks", usize_of(len), |buf| video::split_into(clip, &parts, buf))??;
    ctx.output_json("parts", &parts)
}

/// `video_transcode`: inputs `chunks` (`split`'s output) and `part` (one [`Part`]: a foreach
/// element) → output `video`, the part transcoded (`FQPB`: YUV 4:2:0, quantised, PackBits
/// coded).
pub fn video_transcode(ctx: &mut Context<'_>) -> Result<(), Error> {
    let part: Part = ctx.input_json("part")?;
    let chunk =
        video::chunk(ctx.input("chunks")?, &part).map_err(|e| Error::new(format_args!("input `chunks`: {e}")))?;
    let coded = video::transcode(chunk).map_err(|e| Error::new(format_args!("part {}: {e}", part.index)))?;
    ctx.output("video", &coded)
}

/// `video_merge`: input `parts` (the transcoded parts in order) → outputs `video` (one
/// `FMRG` container) and `summary` (a [`video::Summary`]).
pub fn video_merge(ctx: &mut Context<'_>) -> Result<(), Error> {
    let parts = ctx.inputs("parts")?;
    let (merged, summary) = video::merge(&parts).map_err(|e| Error::new(format_args!("input `parts`: {e}")))?;
    ctx.output("video", &merged)?;
    ctx.output_json("summary", &summary)
}

/// `video_simple_process`: input `video` (an `FVID` clip) → outputs `video` (grey frames at
/// half size, `FGRY`) and `summary` (a [`video::Summary`]).
pub fn video_simple_process(ctx: &mut Context<'_>) -> Result<(), Error> {
    let (grey, summary) =
        video::simple_process(ctx.input("video")?).map_err(|e| Error::new(format_args!("input `video`: {e}")))?;
    ctx.output("video", &grey)?;
    ctx.output_json("summary", &summary)
}

// Illegal recognizer.

/// `recognizer_upload`: inputs `seed`, `width`, `height` (default [`IMAGE_WIDTH`] ×
/// [`IMAGE_HEIGHT`]), `content` (`none`, `adult` or `violence`; default `none`) and `text`
/// (the caption; default [`DEFAULT_CAPTION`], `""` for none) → output `image`, a PPM.
pub fn recognizer_upload(ctx: &mut Context<'_>) -> Result<(), Error> {
    let seed = number(ctx, "seed", DEFAULT_SEED, 0..=u64::MAX)?;
    let width = number(ctx, "width", IMAGE_WIDTH, 16..=image::MAX_SIDE as u64)?;
    let height = number(ctx, "height", IMAGE_HEIGHT, 16..=image::MAX_SIDE as u64)?;
    let content =
        Content::parse(text(ctx, "content", "none")?).map_err(|e| Error::new(format_args!("input `content`: {e}")))?;
    let caption = text(ctx, "text", DEFAULT_CAPTION)?;
    let img = image::generate(seed, usize_of(width), usize_of(height), content, caption)
        .map_err(|e| Error::new(format_args!("inputs `width`, `height`, `text`: {e}")))?;
    ctx.output("image", &img.to_ppm())
}

fn ppm<'a>(ctx: &Context<'a>, name: &str) -> Result<image::PpmRef<'a>, Error> {
    image::parse_ppm(ctx.input(name)?).map_err(|e| Error::new(format_args!("input `{name}`: {e}")))
}

/// `recognizer_adult`: input `image` → output `result`, an [`image::Verdict`] on its
/// skin-tone share.
pub fn recognizer_adult(ctx: &mut Context<'_>) -> Result<(), Error> {
    let verdict = image::classify_adult(ppm(ctx, "image")?);
    ctx.output_json("result", &verdict)
}

/// `recognizer_violence`: input `image` → output `result`, an [`image::Verdict`] on its
/// blood-red share.
pub fn recognizer_violence(ctx: &mut Context<'_>) -> Result<(), Error> {
    let verdict = image::classify_violence(ppm(ctx, "image")?);
    ctx.output_json("result", &verdict)
}

/// `recognizer_extract`: input `image` → output `text`, its caption as a JSON string (see
/// [`image::read_caption`]).
pub fn recognizer_extract(ctx: &mut Context<'_>) -> Result<(), Error> {
    let text = image::read_caption(ppm(ctx, "image")?);
    ctx.output_json("text", &text)
}

/// `recognizer_translate`: input `text` (a JSON string) → output `result`, a
/// [`Translation`].
pub fn recognizer_translate(ctx: &mut Context<'_>) -> Result<(), Error> {
    let text: String = ctx.input_json("text")?;
    ctx.output_json("result", &language::translate(&text))
}

/// `recognizer_word_censor`: input `text` (a [`Translation`]) → output `verdict`, a
/// [`language::Censorship`]; the workflow's switch reads `censored`.
pub fn recognizer_word_censor(ctx: &mut Context<'_>) -> Result<(), Error> {
    let translation: Translation = ctx.input_json("text")?;
    ctx.output_json("verdict", &language::censor(&translation.text))
}

/// What `mosaic` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MosaicReport {
    /// Side of the blocks, pixels.
    pub block: usize,
    /// Blocks averaged.
    pub blocks: usize,
}

/// `recognizer_mosaic`: input `image` → outputs `image` (pixelated in blocks of
/// [`MOSAIC_BLOCK`]) and `report` (a [`MosaicReport`]).
pub fn recognizer_mosaic(ctx: &mut Context<'_>) -> Result<(), Error> {
    let img = ppm(ctx, "image")?;
    let out = image::mosaic(img, MOSAIC_BLOCK);
    ctx.output("image", &out.to_ppm())?;
    let report = MosaicReport {
        block: MOSAIC_BLOCK,
        blocks: img.width.div_ceil(MOSAIC_BLOCK) * img.height.div_ceil(MOSAIC_BLOCK),
    };
    ctx.output_json("report", &report)
}

/// What the recognizer publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Bytes of the published image.
    pub bytes: u64,
    /// FNV-1a of the published image.
    pub checksum: String,
    /// Whether it was pixelated.
    pub mosaic: bool,
}

/// `recognizer_publish`: inputs `image` (the image to publish: the first of its sources that
/// ran) and `mosaic` (`mosaic`'s report, absent when no mosaic ran) → output `summary`, a
/// [`Publication`].
pub fn recognizer_publish(ctx: &mut Context<'_>) -> Result<(), Error> {
    let img = ctx.input("image")?;
    let summary = Publication {
        bytes: img.len() as u64,
        checksum: checksum(img),
        mosaic: optional(ctx, "mosaic")?.is_some(),
    };
    ctx.output_json("summary", &summary)
}

#[cfg(test)]
mod tests {
    use faasflow_sdk::testing::TestCall;

    use super::*;
    use crate::pack;

    #[test]
    fn the_word_count_through_the_pack() -> Result<(), Error> {
        let pack = pack();
        let start = TestCall::new("wordcount_start")
            .input("seed", "5")
            .input("bytes", "20000")
            .input("parts", "3")
            .run_in(&pack)?;
        let texts: Vec<String> = start.output_json("texts")?;
        assert_eq!(texts, words::generate_texts(5, 20_000, 3));
        let mut counts = Vec::new();
        for t in &texts {
            let out = TestCall::new("wordcount_count").input("text", t).run_in(&pack)?;
            counts.push(out.output("counts").unwrap_or_default().to_vec());
        }
        let merged = TestCall::new("wordcount_merge")
            .input_list("counts", &counts)
            .run_in(&pack)?;
        let summary: words::Summary = merged.output_json("result")?;
        let expected = words::count_words(&texts.join(" "));
        assert_eq!(summary.words, expected.values().sum::<u64>());
        assert_eq!(summary.distinct, expected.len() as u64);
        assert_eq!(summary.top[0].0, "the");
        Ok(())
    }

    #[test]
    fn inputs_are_checked_and_defaulted() -> Result<(), Error> {
        let pack = pack();
        let err = TestCall::new("wordcount_start")
            .input("bytes", "\"lots\"")
            .run_in(&pack)
            .unwrap_err();
        assert_eq!(
            err.message(),
            "input `bytes` must be a whole number from 1 to 536870912, not `\"lots\"`"
        );
        let err = TestCall::new("wordcount_start")
            .input("parts", "0")
            .run_in(&pack)
            .unwrap_err();
        assert!(err.message().contains("from 1 to 1024, not `0`"), "{}", err.message());
        let out = TestCall::new("wordcount_start")
            .input("bytes", "1e3")
            .input_absent("seed")
            .input("parts", "null")
            .run_in(&pack)?;
        let texts: Vec<String> = out.output_json("texts")?;
        assert_eq!(
            texts,
            words::generate_texts(DEFAULT_SEED, 1000, WORDCOUNT_PARTS as usize)
        );
        let err = TestCall::new("recognizer_upload")
            .input("content", "gore")
            .run_in(&pack)
            .unwrap_err();
        assert_eq!(
            err.message(),
            "input `content`: `gore` is not a content: expected `none`, `adult` or `violence`"
        );
        let err = TestCall::new("video_upload")
            .input("width", "30")
            .run_in(&pack)
            .unwrap_err();
        assert!(
            err.message().contains("the width must be a multiple of 4"),
            "{}",
            err.message()
        );
        Ok(())
    }

    #[test]
    fn the_video_functions_write_in_place_and_transcode_parts() -> Result<(), Error> {
        let pack = pack();
        let up = TestCall::new("video_upload")
            .input("seed", "2")
            .input("frames", "5")
            .input("width", "32")
            .input("height", "16")
            .run_in(&pack)?;
        let clip = up.output("video").unwrap_or_default().to_vec();
        assert_eq!(clip.len(), 16 + 5 * 32 * 16 * 3);
        let meta: Meta = up.output_json("meta")?;
        assert!(!meta.long);
        let split = TestCall::new("video_split")
            .input("video", &clip)
            .input("segment", "2")
            .run_in(&pack)?;
        let parts: Vec<Part> = split.output_json("parts")?;
        assert_eq!(parts.len(), 3);
        let chunks = split.output("chunks").unwrap_or_default().to_vec();
        let mut coded = Vec::new();
        for p in &parts {
            let out = TestCall::new("video_transcode")
                .input("chunks", &chunks)
                .input("part", serde_json::to_vec(p)?)
                .run_in(&pack)?;
            coded.push(out.output("video").unwrap_or_default().to_vec());
        }
        let merged = TestCall::new("video_merge").input_list("parts", &coded).run_in(&pack)?;
        let summary: video::Summary = merged.output_json("summary")?;
        assert_eq!(
            (summary.branch.as_str(), summary.parts, summary.frames),
            ("split", 3, 5)
        );
        let bad = Part { offset: 1, ..parts[0] };
        let err = TestCall::new("video_transcode")
            .input("chunks", &chunks)
            .input("part", serde_json::to_vec(&bad)?)
            .run_in(&pack)
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("part 0: video: expected a 16-byte header starting with `FVID`"),
            "{}",
            err.message()
        );
        Ok(())
    }

    #[test]
    fn the_recognizer_functions() -> Result<(), Error> {
        let pack = pack();
        let up = TestCall::new("recognizer_upload")
            .input("width", "200")
            .input("height", "160")
            .input("text", "el hombre vende drogas")
            .run_in(&pack)?;
        let img = up.output("image").unwrap_or_default().to_vec();
        assert!(img.starts_with(b"P6\n200 160\n255\n"));
        let adult: image::Verdict = TestCall::new("recognizer_adult")
            .input("image", &img)
            .run_in(&pack)?
            .output_json("result")?;
        assert!(!adult.illegal);
        let text = TestCall::new("recognizer_extract").input("image", &img).run_in(&pack)?;
        assert_eq!(text.output("text"), Some(&b"\"el hombre vende drogas\""[..]));
        let translated = TestCall::new("recognizer_translate")
            .input("text", text.output("text").unwrap_or_default())
            .run_in(&pack)?;
        let verdict: language::Censorship = TestCall::new("recognizer_word_censor")
            .input("text", translated.output("result").unwrap_or_default())
            .run_in(&pack)?
            .output_json("verdict")?;
        assert_eq!((verdict.censored, verdict.banned), (true, vec!["drugs".to_string()]));
        let mosaic = TestCall::new("recognizer_mosaic")
            .input("image", &img)
            .spare(2 << 20)
            .run_in(&pack)?;
        let report: MosaicReport = mosaic.output_json("report")?;
        assert_eq!(
            report,
            MosaicReport {
                block: 16,
                blocks: 13 * 10
            }
        );
        let pixelated = mosaic.output("image").unwrap_or_default();
        assert_eq!(pixelated.len(), img.len());
        let published = TestCall::new("recognizer_publish")
            .input("image", pixelated)
            .input("mosaic", mosaic.output("report").unwrap_or_default())
            .run_in(&pack)?;
        let p: Publication = published.output_json("summary")?;
        assert_eq!((p.bytes, p.mosaic), (img.len() as u64, true));
        let plain = TestCall::new("recognizer_publish")
            .input("image", &img)
            .input_absent("mosaic")
            .run_in(&pack)?;
        assert!(!plain.output_json::<Publication>("summary")?.mosaic);
        Ok(())
    }

    #[test]
    fn file_processing_functions_agree_with_the_plain_code() -> Result<(), Error> {
        let pack = pack();
        let start = TestCall::new("fileprocessing_start")
            .input("seed", "3")
            .input("bytes", "50000")
            .run_in(&pack)?;
        let doc = start.output("document").unwrap_or_default().to_vec();
        assert_eq!(doc, markdown::generate_document(3, 50_000).into_bytes());
        let html = TestCall::new("fileprocessing_conversion")
            .input("document", &doc)
            .run_in(&pack)?;
        let score = TestCall::new("fileprocessing_sentiment")
            .input("document", &doc)
            .run_in(&pack)?;
        let up = TestCall::new("fileprocessing_upload")
            .input("html", html.output("html").unwrap_or_default())
            .input("score", score.output("score").unwrap_or_default())
            .run_in(&pack)?;
        let summary: Upload = up.output_json("summary")?;
        let text = std::str::from_utf8(&doc)?;
        let expected_html = markdown::to_html(text);
        assert_eq!(summary.html_bytes, expected_html.len() as u64);
        assert_eq!(summary.checksum, checksum(expected_html.as_bytes()));
        assert_eq!(summary.sentiment, sentiment::score(text));
        Ok(())
    }
}
