//! Video: a generated clip of RGB frames, its preview, cutting it into chunks, transcoding a
//! chunk (YUV 4:2:0, quantisation, PackBits run-length coding), merging the transcoded
//! chunks, and the cheaper grey-scale pass for short clips.
//!
//! Every container here starts with a 16-byte header: 4 bytes of magic, then width, height and
//! frame count as little-endian `u32`s.
//! - `FVID`: RGB frames, 3 bytes per pixel, row by row (the clip, its chunks, the preview).
//! - `FQPB`: transcoded frames, each a `u32` byte count and then its Y, U and V planes
//!   quantised to levels (a level `q` stands for `q·Q + Q/2`, `Q` = [`QUANT`]) and PackBits
//!   coded: a byte `n` < 128 is followed by `n + 1` literal levels, a byte `n` > 128 by one
//!   level repeated `257 − n` times.
//! - `FGRY`: grey-scale frames at half size, one byte per pixel.
//! - `FMRG`: merged parts: magic, part count (`u32`), then each part as a `u64` length and its
//!   bytes.

use serde::{Deserialize, Serialize};

use crate::rng::{Rng, checksum};

/// Bytes of every container's header.
pub const HEADER: usize = 16;
/// Magic of a clip of RGB frames.
pub const RGB: [u8; 4] = *b"FVID";
/// Magic of transcoded frames.
pub const TRANSCODED: [u8; 4] = *b"FQPB";
/// Magic of grey-scale frames.
pub const GREY: [u8; 4] = *b"FGRY";
/// Magic of merged parts.
pub const MERGED: [u8; 4] = *b"FMRG";
/// Frames per second of the generated clips.
pub const FPS: u32 = 25;
/// A clip of more frames than this (2 s) is long: it is split and transcoded in parallel.
pub const LONG_VIDEO_FRAMES: u32 = 2 * FPS;
/// Every how many frames the preview keeps one.
pub const PREVIEW_STEP: u32 = 3;
/// Quantisation step of the transcoder.
pub const QUANT: u8 = 4;
/// Largest clip generated, bytes.
pub const MAX_VIDEO_BYTES: usize = 1 << 30;

/// The shape of a clip: frame size and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// Pixels per row.
    pub width: u32,
    /// Rows per frame.
    pub height: u32,
    /// Frames.
    pub frames: u32,
}

impl Dims {
    /// Checks that a clip of this shape can be generated and transcoded: width and height
    /// multiples of 4 from 4 to 4096, at least one frame, at most [`MAX_VIDEO_BYTES`].
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !(4..=4096).contains(&v) || !v.is_multiple_of(4) {
                return Err(format!("the {name} must be a multiple of 4 from 4 to 4096, not {v}"));
            }
        }
        if self.frames == 0 {
            return Err("a video needs at least 1 frame".into());
        }
        let len = self.rgb_len();
        if len > MAX_VIDEO_BYTES {
            return Err(format!(
                "{} frames of {}×{} are {len} bytes, more than the {MAX_VIDEO_BYTES} allowed",
                self.frames, self.width, self.height
            ));
        }
        Ok(())
    }

    /// Bytes of one RGB frame.
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Bytes of the `FVID` clip, header included.
    pub fn rgb_len(&self) -> usize {
        HEADER + self.frames as usize * self.frame_len()
    }

    /// Whether the clip is long (more than [`LONG_VIDEO_FRAMES`]).
    pub fn is_long(&self) -> bool {
        self.frames > LONG_VIDEO_FRAMES
    }
}

fn write_header(out: &mut [u8], magic: [u8; 4], width: u32, height: u32, count: u32) {
    out[..4].copy_from_slice(&magic);
    out[4..8].copy_from_slice(&width.to_le_bytes());
    out[8..12].copy_from_slice(&height.to_le_bytes());
    out[12..16].copy_from_slice(&count.to_le_bytes());
}

fn header(magic: [u8; 4], width: u32, height: u32, count: u32) -> Vec<u8> {
    let mut h = vec![0; HEADER];
    write_header(&mut h, magic, width, height, count);
    h
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads the header of a container with magic `magic`: the shape and the bytes after it.
fn read_header<'a>(bytes: &'a [u8], magic: [u8; 4], what: &str) -> Result<(Dims, &'a [u8]), String> {
    if bytes.len() < HEADER || bytes[..4] != magic {
        return Err(format!(
            "{what}: expected a {}-byte header starting with `{}`, got {} bytes starting with {:?}",
            HEADER,
            String::from_utf8_lossy(&magic),
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(4)])
        ));
    }
    let dims = Dims {
        width: u32_at(bytes, 4),
        height: u32_at(bytes, 8),
        frames: u32_at(bytes, 12),
    };
    Ok((dims, &bytes[HEADER..]))
}

/// Parses an `FVID` clip: its shape and its frames (checked to be whole).
pub fn parse_rgb(bytes: &[u8]) -> Result<(Dims, &[u8]), String> {
    let (dims, frames) = read_header(bytes, RGB, "video")?;
    dims.check()?;
    if bytes.len() != dims.rgb_len() {
        return Err(format!(
            "video: a clip of {} frames of {}×{} has {} bytes, this one {}",
            dims.frames,
            dims.width,
            dims.height,
            dims.rgb_len(),
            bytes.len()
        ));
    }
    Ok((dims, frames))
}

/// What `upload` says about the clip; the workflow's switch reads `long`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Frames.
    pub frames: u32,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Duration in seconds.
    pub seconds: f64,
    /// Whether the clip is long (see [`LONG_VIDEO_FRAMES`]).
    pub long: bool,
}

impl Meta {
    /// The meta of a clip of shape `dims`.
    pub fn of(dims: Dims) -> Meta {
        Meta {
            frames: dims.frames,
            width: dims.width,
            height: dims.height,
            fps: FPS,
            seconds: f64::from(dims.frames) / f64::from(FPS),
            long: dims.is_long(),
        }
    }
}

/// A shape moving over the clip.
#[derive(Debug, Clone)]
struct Sprite {
    round: bool,
    w: i64,
    h: i64,
    x0: i64,
    y0: i64,
    vx: i64,
    vy: i64,
    color: [u8; 3],
}

/// `x0 + v·t` bouncing between 0 and `span`.
fn bounce(x0: i64, v: i64, t: i64, span: i64) -> i64 {
    if span <= 0 {
        return 0;
    }
    let p = (x0 + v * t).rem_euclid(2 * span);
    if p > span { 2 * span - p } else { p }
}

/// Grain of the rendered frames: every pixel is offset by up to this much, like a camera
/// sensor's noise.
pub const GRAIN: i16 = 4;

/// Renders the clip of shape `dims` drawn from `seed` into `out` (exactly
/// [`Dims::rgb_len`] bytes: header and frames): a background of two gradients, one scrolling
/// sideways, 5 to 8 rectangles and discs moving and bouncing off the edges, and grain (see
/// [`GRAIN`]).
pub fn render(seed: u64, dims: Dims, out: &mut [u8]) {
    assert_eq!(out.len(), dims.rgb_len(), "render: the buffer must hold the whole clip");
    let mut rng = Rng::new(seed);
    let (w, h) = (i64::from(dims.width), i64::from(dims.height));
    let top: [i64; 3] = [rng.range(20, 90), rng.range(40, 120), rng.range(120, 220)];
    let bottom: [i64; 3] = [rng.range(40, 140), rng.range(90, 200), rng.range(20, 90)];
    let speed = rng.range(1, 4);
    let sprites: Vec<Sprite> = (0..5 + rng.below(4))
        .map(|_| {
            let sw = rng.range(w / 12, w / 4).max(1);
            let sh = rng.range(h / 12, h / 4).max(1);
            let scale = (w / 160).max(1);
            Sprite {
                round: rng.chance(0.5),
                w: sw,
                h: sh,
                x0: rng.range(0, w - sw),
                y0: rng.range(0, h - sh),
                vx: rng.range(-3, 3) * scale,
                vy: rng.range(-2, 2) * scale,
                color: [rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8],
            }
        })
        .collect();
    write_header(out, RGB, dims.width, dims.height, dims.frames);
    let row_len = dims.width as usize * 3;
    for (t, frame) in out[HEADER..].chunks_exact_mut(dims.frame_len()).enumerate() {
        let t = t as i64;
        for (y, row) in frame.chunks_exact_mut(row_len).enumerate() {
            let y = y as i64;
            let base: [i64; 3] = std::array::from_fn(|c| top[c] + (bottom[c] - top[c]) * y / h);
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let wave = ((x as i64 + speed * t) * 64 / w) % 64;
                px[0] = (base[0] + wave) as u8;
                px[1] = base[1] as u8;
                px[2] = (base[2] + 32 - wave / 2) as u8;
            }
        }
        for s in &sprites {
            let x = bounce(s.x0, s.vx, t, w - s.w);
            let y = bounce(s.y0, s.vy, t, h - s.h);
            draw_sprite(frame, dims.width as usize, s, x, y);
        }
        add_grain(frame, &mut Rng::stream(seed, t as u64));
    }
}

/// Offsets every pixel of `frame` by a random amount in `-GRAIN..=GRAIN` (the same on its
/// three channels), 4 bits of `noise` per pixel.
fn add_grain(frame: &mut [u8], noise: &mut Rng) {
    let span = 2 * GRAIN + 1;
    for pixels in frame.chunks_mut(3 * 16) {
        let mut bits = noise.next_u64();
        for px in pixels.chunks_exact_mut(3) {
            let offset = (bits & 0xF) as i16 % span - GRAIN;
            bits >>= 4;
            for v in px {
                *v = (i16::from(*v) + offset).clamp(0, 255) as u8;
            }
        }
    }
}

fn draw_sprite(frame: &mut [u8], width: usize, s: &Sprite, x: i64, y: i64) {
    let (rx, ry) = (s.w as f64 / 2.0, s.h as f64 / 2.0);
    for dy in 0..s.h {
        let (from, to) = if s.round {
            let fy = (dy as f64 + 0.5 - ry) / ry;
            let half = rx * (1.0 - fy * fy).max(0.0).sqrt();
            ((rx - half).round() as i64, (rx + half).round() as i64)
        } else {
            (0, s.w)
        };
        let row = (y + dy) as usize * width;
        for px in frame[(row + (x + from) as usize) * 3..(row + (x + to) as usize) * 3].chunks_exact_mut(3) {
            px.copy_from_slice(&s.color);
        }
    }
}

/// Halves an RGB image (`width`, `height` even) by averaging each 2×2 block.
pub fn downscale(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (w2, h2) = (width / 2, height / 2);
    let mut out = vec![0; w2 * h2 * 3];
    for y in 0..h2 {
        let r0 = &rgb[2 * y * width * 3..][..width * 3];
        let r1 = &rgb[(2 * y + 1) * width * 3..][..width * 3];
        let dst = &mut out[y * w2 * 3..][..w2 * 3];
        for x in 0..w2 {
            for c in 0..3 {
                let i = 6 * x + c;
                let sum = u16::from(r0[i]) + u16::from(r0[i + 3]) + u16::from(r1[i]) + u16::from(r1[i + 3]);
                dst[3 * x + c] = ((sum + 2) / 4) as u8;
            }
        }
    }
    out
}

/// The preview of a clip: every [`PREVIEW_STEP`]-th frame at half size, as an `FVID` clip.
pub fn preview(clip: &[u8]) -> Result<Vec<u8>, String> {
    let (dims, frames) = parse_rgb(clip)?;
    let (w, h) = (dims.width as usize, dims.height as usize);
    let kept: Vec<&[u8]> = frames
        .chunks_exact(dims.frame_len())
        .step_by(PREVIEW_STEP as usize)
        .collect();
    let mut out = header(RGB, dims.width / 2, dims.height / 2, kept.len() as u32);
    for f in kept {
        out.extend_from_slice(&downscale(f, w, h));
    }
    Ok(out)
}

/// One chunk of a split clip: which frames, and where its `FVID` clip is in the split's
/// output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its position among the chunks.
    pub index: u32,
    /// Its first frame in the clip.
    pub first: u32,
    /// Its frames.
    pub frames: u32,
    /// Offset of its `FVID` clip in the split output.
    pub offset: u64,
    /// Length of its `FVID` clip.
    pub len: u64,
}

/// The chunks a clip of shape `dims` is cut into, `segment` frames each (the last one takes
/// what is left), laid out one after the other.
pub fn plan_split(dims: Dims, segment: u32) -> Vec<Part> {
    let segment = segment.max(1);
    let chunk = Dims { frames: 0, ..dims };
    let mut offset = 0u64;
    (0..dims.frames.div_ceil(segment))
        .map(|index| {
            let first = index * segment;
            let frames = segment.min(dims.frames - first);
            let len = Dims { frames, ..chunk }.rgb_len() as u64;
            let part = Part {
                index,
                first,
                frames,
                offset,
                len,
            };
            offset += len;
            part
        })
        .collect()
}

/// Cuts `clip` into the chunks of `parts` (from [`plan_split`]), each an `FVID` clip of its
/// own, into `out` (as long as the parts together).
pub fn split_into(clip: &[u8], parts: &[Part], out: &mut [u8]) -> Result<(), String> {
    let (dims, frames) = parse_rgb(clip)?;
    let frame_len = dims.frame_len();
    for p in parts {
        let dst = &mut out[p.offset as usize..(p.offset + p.len) as usize];
        write_header(dst, RGB, dims.width, dims.height, p.frames);
        let from = p.first as usize * frame_len;
        dst[HEADER..].copy_from_slice(&frames[from..from + p.frames as usize * frame_len]);
    }
    Ok(())
}

/// The chunk of `part` in a split output, checked.
pub fn chunk<'a>(split: &'a [u8], part: &Part) -> Result<&'a [u8], String> {
    let end = part.offset.checked_add(part.len).filter(|&e| e <= split.len() as u64);
    let Some(end) = end else {
        return Err(format!(
            "part {} ({} bytes at offset {}) lies outside the {}-byte split video",
            part.index,
            part.len,
            part.offset,
            split.len()
        ));
    };
    Ok(&split[part.offset as usize..end as usize])
}

/// Converts an RGB image (`width`, `height` even) to planar YUV 4:2:0: BT.601 full-range Y
/// for every pixel, U and V averaged over 2×2 blocks. Returns the Y plane (`w × h`) followed
/// by U and V (`w/2 × h/2` each).
pub fn to_yuv420(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (cw, ch) = (width / 2, height / 2);
    let mut out = vec![0u8; width * height + 2 * cw * ch];
    let (y_plane, chroma) = out.split_at_mut(width * height);
    let (u_plane, v_plane) = chroma.split_at_mut(cw * ch);
    let mut u_sum = vec![0u16; cw * ch];
    let mut v_sum = vec![0u16; cw * ch];
    for (y, row) in rgb.chunks_exact(width * 3).take(height).enumerate() {
        let c_row = (y / 2) * cw;
        for (x, p) in row.chunks_exact(3).enumerate() {
            let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            y_plane[y * width + x] = clamp((77 * r + 150 * g + 29 * b + 128) >> 8);
            let c = c_row + x / 2;
            u_sum[c] += u16::from(clamp(((-43 * r - 85 * g + 128 * b + 128) >> 8) + 128));
            v_sum[c] += u16::from(clamp(((128 * r - 107 * g - 21 * b + 128) >> 8) + 128));
        }
    }
    for (dst, sum) in u_plane.iter_mut().zip(&u_sum).chain(v_plane.iter_mut().zip(&v_sum)) {
        *dst = ((sum + 2) / 4) as u8;
    }
    out
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// Longest run or literal stretch of one PackBits header.
const PACKBITS_MAX: usize = 128;

/// Quantises `samples` to levels of [`QUANT`] and PackBits-codes them into `out`: runs of 3
/// or more equal levels as a header `257 − run` and the level, anything else as a header
/// `len − 1` and `len` literal levels (at most 128 each).
pub fn quantise_packbits(samples: &[u8], out: &mut Vec<u8>) {
    let levels: Vec<u8> = samples.iter().map(|s| s / QUANT).collect();
    let n = levels.len();
    let starts_run = |i: usize| i + 2 < n && levels[i] == levels[i + 1] && levels[i] == levels[i + 2];
    let mut i = 0;
    while i < n {
        if starts_run(i) {
            let mut run = 3;
            while i + run < n && run < PACKBITS_MAX && levels[i + run] == levels[i] {
                run += 1;
            }
            out.push((257 - run) as u8);
            out.push(levels[i]);
            i += run;
        } else {
            let start = i;
            while i < n && i - start < PACKBITS_MAX && (i == start || !starts_run(i)) {
                i += 1;
            }
            out.push((i - start - 1) as u8);
            out.extend_from_slice(&levels[start..i]);
        }
    }
}

/// Decodes PackBits data into levels, or says why it cannot.
fn unpackbits(coded: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while i < coded.len() {
        let h = coded[i];
        i += 1;
        match h {
            0..=127 => {
                let len = usize::from(h) + 1;
                let literal = coded.get(i..i + len).ok_or("a literal runs past the end")?;
                out.extend_from_slice(literal);
                i += len;
            }
            128 => {}
            _ => {
                let level = *coded.get(i).ok_or("a run has no level")?;
                out.extend(std::iter::repeat_n(level, 257 - usize::from(h)));
                i += 1;
            }
        }
    }
    Ok(())
}

/// Transcodes an `FVID` chunk into an `FQPB` one: each frame through [`to_yuv420`] and
/// [`quantise_packbits`].
pub fn transcode(chunk: &[u8]) -> Result<Vec<u8>, String> {
    let (dims, frames) = parse_rgb(chunk)?;
    let (w, h) = (dims.width as usize, dims.height as usize);
    let mut out = header(TRANSCODED, dims.width, dims.height, dims.frames);
    for frame in frames.chunks_exact(dims.frame_len()) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        quantise_packbits(&to_yuv420(frame, w, h), &mut out);
        let n = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    Ok(out)
}

/// Decodes an `FQPB` chunk: its shape and each frame's planar YUV 4:2:0 samples (every level
/// back to the middle of its step).
pub fn decode_transcoded(bytes: &[u8]) -> Result<(Dims, Vec<Vec<u8>>), String> {
    let (dims, mut rest) = read_header(bytes, TRANSCODED, "transcoded video")?;
    let (w, h) = (dims.width as usize, dims.height as usize);
    let samples = w * h + 2 * (w / 2) * (h / 2);
    let mut frames = Vec::with_capacity(dims.frames as usize);
    for i in 0..dims.frames {
        let bad = |why: &str| format!("transcoded video: frame {i}: {why}");
        if rest.len() < 4 {
            return Err(bad("truncated"));
        }
        let n = u32_at(rest, 0) as usize;
        let coded = rest.get(4..4 + n).ok_or_else(|| bad("truncated"))?;
        let mut frame = Vec::with_capacity(samples);
        unpackbits(coded, &mut frame).map_err(|e| bad(&e))?;
        if frame.len() != samples {
            return Err(bad(&format!("{} samples, expected {samples}", frame.len())));
        }
        for v in &mut frame {
            *v = v.saturating_mul(QUANT).saturating_add(QUANT / 2);
        }
        frames.push(frame);
        rest = &rest[4 + n..];
    }
    if !rest.is_empty() {
        return Err(format!("transcoded video: {} bytes after the last frame", rest.len()));
    }
    Ok((dims, frames))
}

/// What `merge` and `simple_process` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// `split` (transcoded in chunks) or `simple` (grey-scale pass).
    pub branch: String,
    /// Chunks merged (1 for the simple pass).
    pub parts: u32,
    /// Frames in the result.
    pub frames: u32,
    /// Bytes of the result.
    pub bytes: u64,
    /// FNV-1a of the result.
    pub checksum: String,
}

/// Concatenates transcoded chunks into one `FMRG` container, after checking each one's
/// header; the summary counts their frames.
pub fn merge(parts: &[&[u8]]) -> Result<(Vec<u8>, Summary), String> {
    let mut frames = 0u32;
    let total: usize = parts.iter().map(|p| p.len() + 8).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(&MERGED);
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    for (i, p) in parts.iter().enumerate() {
        let (dims, _) = read_header(p, TRANSCODED, &format!("part {i}"))?;
        frames += dims.frames;
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    let summary = Summary {
        branch: "split".into(),
        parts: parts.len() as u32,
        frames,
        bytes: out.len() as u64,
        checksum: checksum(&out),
    };
    Ok((out, summary))
}

/// The cheaper pass for short clips: every frame in grey at half size (the Y of a 2× box
/// downscale), as an `FGRY` container.
pub fn simple_process(clip: &[u8]) -> Result<(Vec<u8>, Summary), String> {
    let (dims, frames) = parse_rgb(clip)?;
    let (w, h) = (dims.width as usize, dims.height as usize);
    let mut out = header(GREY, dims.width / 2, dims.height / 2, dims.frames);
    out.reserve(dims.frames as usize * (w / 2) * (h / 2));
    for frame in frames.chunks_exact(dims.frame_len()) {
        for p in downscale(frame, w, h).chunks_exact(3) {
            let (r, g, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
            out.push(((77 * r + 150 * g + 29 * b + 128) >> 8) as u8);
        }
    }
    let summary = Summary {
        branch: "simple".into(),
        parts: 1,
        frames: dims.frames,
        bytes: out.len() as u64,
        checksum: checksum(&out),
    };
    Ok((out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(seed: u64, width: u32, height: u32, frames: u32) -> Vec<u8> {
        let dims = Dims { width, height, frames };
        let mut out = vec![0; dims.rgb_len()];
        render(seed, dims, &mut out);
        out
    }

    fn solid(width: usize, height: usize, rgb: [u8; 3]) -> Vec<u8> {
        rgb.repeat(width * height)
    }

    #[test]
    fn clips_are_deterministic_and_move() {
        let a = clip(1, 64, 48, 4);
        assert_eq!(a, clip(1, 64, 48, 4));
        assert_ne!(a, clip(2, 64, 48, 4));
        let (dims, frames) = parse_rgb(&a).unwrap();
        assert_eq!(
            dims,
            Dims {
                width: 64,
                height: 48,
                frames: 4
            }
        );
        let f = dims.frame_len();
        assert_ne!(frames[..f], frames[f..2 * f], "frames differ");
    }

    #[test]
    fn bad_shapes_and_containers_are_refused() {
        assert!(
            Dims {
                width: 30,
                height: 48,
                frames: 1
            }
            .check()
            .unwrap_err()
            .contains("multiple of 4")
        );
        assert!(
            Dims {
                width: 64,
                height: 48,
                frames: 0
            }
            .check()
            .is_err()
        );
        assert!(
            Dims {
                width: 4096,
                height: 4096,
                frames: 100
            }
            .check()
            .unwrap_err()
            .contains("more than")
        );
        let mut c = clip(1, 8, 8, 1);
        c.pop();
        assert!(parse_rgb(&c).unwrap_err().contains("has 208 bytes, this one 207"));
        assert!(parse_rgb(b"nope").unwrap_err().contains("`FVID`"));
    }

    #[test]
    fn downscale_averages_blocks() {
        // 4×2: left block black and white, right block all 100.
        let mut img = vec![0u8; 4 * 2 * 3];
        img[3..6].copy_from_slice(&[255, 255, 255]);
        img[12 + 3..12 + 6].copy_from_slice(&[255, 255, 255]);
        for px in [2usize, 3, 6, 7] {
            img[px * 3..px * 3 + 3].copy_from_slice(&[100, 100, 100]);
        }
        assert_eq!(downscale(&img, 4, 2), [128, 128, 128, 100, 100, 100]);
    }

    #[test]
    fn yuv_of_solid_frames() {
        let red = to_yuv420(&solid(8, 8, [255, 0, 0]), 8, 8);
        assert_eq!(red.len(), 8 * 8 + 2 * 4 * 4, "Y 8×8, U and V 4×4");
        assert_eq!((red[0], red[64], red[80]), (77, 85, 255));
        // Chroma is averaged over 2×2 blocks: a block of two red and two black pixels.
        let mut img = solid(4, 2, [0, 0, 0]);
        img[..3].copy_from_slice(&[255, 0, 0]);
        img[12..15].copy_from_slice(&[255, 0, 0]);
        let yuv = to_yuv420(&img, 4, 2);
        assert_eq!(yuv[..8], [77, 0, 0, 0, 77, 0, 0, 0]);
        // U: (85 + 128 + 85 + 128) / 4 rounded; V: (255 + 128 + 255 + 128) / 4.
        assert_eq!((yuv[8], yuv[10]), (107, 192));
        let grey = to_yuv420(&solid(8, 8, [128, 128, 128]), 8, 8);
        assert!(grey.iter().all(|&v| v == 128), "{grey:?}");
    }

    #[test]
    fn packbits_codes_runs_and_literals() {
        // Samples in the middle of the steps of these levels.
        let samples = |levels: &[u8]| levels.iter().map(|l| l * QUANT + QUANT / 2).collect::<Vec<u8>>();
        let mut out = Vec::new();
        quantise_packbits(&[0, QUANT - 1, QUANT, QUANT + 1, 255], &mut out);
        assert_eq!(
            out,
            [4, 0, 0, 1, 1, 255 / QUANT],
            "levels 0 0 1 1 max: one literal stretch"
        );
        out.clear();
        quantise_packbits(&samples(&[2; 300]), &mut out);
        assert_eq!(out, [129, 2, 129, 2, 213, 2], "runs of 128, 128 and 44");
        out.clear();
        quantise_packbits(&samples(&[1, 2, 3, 3, 3, 3, 4]), &mut out);
        assert_eq!(out, [1, 1, 2, 253, 3, 0, 4]);
        out.clear();
        quantise_packbits(&[], &mut out);
        assert!(out.is_empty());
        let noisy: Vec<u8> = (0..1000u32).map(|i| (i * 37 % 251) as u8).collect();
        out.clear();
        quantise_packbits(&noisy, &mut out);
        assert!(
            out.len() <= 1000 + 1000 / 128 + 1,
            "literals cost at most one byte in 128"
        );
        let mut back = Vec::new();
        unpackbits(&out, &mut back).unwrap();
        assert_eq!(back, noisy.iter().map(|v| v / QUANT).collect::<Vec<_>>());
        assert!(unpackbits(&[5, 1, 2], &mut back).unwrap_err().contains("past the end"));
        assert!(unpackbits(&[200], &mut back).unwrap_err().contains("no level"));
    }

    #[test]
    fn split_transcode_merge_round_trip() {
        let c = clip(9, 64, 48, 7);
        let (dims, frames) = parse_rgb(&c).unwrap();
        let parts = plan_split(dims, 3);
        assert_eq!(
            parts.iter().map(|p| (p.first, p.frames)).collect::<Vec<_>>(),
            [(0, 3), (3, 3), (6, 1)]
        );
        let total = parts.iter().map(|p| p.len).sum::<u64>() as usize;
        assert_eq!(total, 3 * HEADER + 7 * dims.frame_len());
        let mut split = vec![0; total];
        split_into(&c, &parts, &mut split).unwrap();
        let mut coded = Vec::new();
        for p in &parts {
            let ch = chunk(&split, p).unwrap();
            let (cd, cf) = parse_rgb(ch).unwrap();
            assert_eq!(cd.frames, p.frames);
            let from = p.first as usize * dims.frame_len();
            assert_eq!(cf, &frames[from..from + cf.len()]);
            let t = transcode(ch).unwrap();
            let (td, tf) = decode_transcoded(&t).unwrap();
            assert_eq!((td.width, td.height, td.frames), (64, 48, p.frames));
            // Each sample comes back within half a quantisation step.
            for (i, frame) in tf.iter().enumerate() {
                let exact = to_yuv420(&cf[i * dims.frame_len()..][..dims.frame_len()], 64, 48);
                assert_eq!(frame.len(), 64 * 48 + 2 * 32 * 24);
                for (a, b) in frame.iter().zip(&exact) {
                    assert!(a.abs_diff(*b) <= QUANT / 2, "{a} vs {b}");
                }
            }
            coded.push(t);
        }
        let refs: Vec<&[u8]> = coded.iter().map(Vec::as_slice).collect();
        let (merged, summary) = merge(&refs).unwrap();
        assert_eq!((summary.parts, summary.frames), (3, 7));
        assert_eq!(summary.bytes as usize, merged.len());
        assert_eq!(merged.len(), 8 + coded.iter().map(|c| c.len() + 8).sum::<usize>());
        assert_eq!(&merged[..4], b"FMRG");
        let outside = Part {
            offset: total as u64 - 10,
            ..parts[0]
        };
        assert!(chunk(&split, &outside).unwrap_err().contains("outside"));
        assert!(merge(&[b"FVID0123456789ab".as_slice()]).unwrap_err().contains("part 0"));
    }

    #[test]
    fn preview_and_simple_process_sizes() {
        let c = clip(3, 16, 8, 7);
        let p = preview(&c).unwrap();
        let (pd, _) = parse_rgb(&p).unwrap();
        assert_eq!((pd.width, pd.height, pd.frames), (8, 4, 3), "frames 0, 3 and 6");
        let (grey, summary) = simple_process(&c).unwrap();
        assert_eq!(grey.len(), HEADER + 7 * 8 * 4);
        assert_eq!((summary.frames, summary.bytes), (7, grey.len() as u64));
        let (_, s2) = simple_process(&solid_clip()).unwrap();
        assert_eq!(s2.frames, 1);
    }

    fn solid_clip() -> Vec<u8> {
        let mut c = header(RGB, 4, 4, 1);
        c.extend(solid(4, 4, [10, 20, 30]));
        c
    }

    #[test]
    fn long_is_more_than_two_seconds() {
        let meta = Meta::of(Dims {
            width: 8,
            height: 8,
            frames: 51,
        });
        assert!(meta.long);
        assert_eq!(meta.seconds, 2.04);
        assert!(
            !Meta::of(Dims {
                width: 8,
                height: 8,
                frames: 50
            })
            .long
        );
    }
}
