//! Images for the illegal recognizer: a generated scene as a binary PPM (`P6`), with optional
//! "illegal" content and a caption; the two classifiers (share of skin-tone pixels, share of
//! blood-red pixels); reading the caption back (the OCR substitute); and pixelation.

use serde::{Deserialize, Serialize};

use crate::font::{GLYPH_H, GLYPH_W, glyph, normalise, pixel, recognise};
use crate::rng::Rng;

/// An RGB image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width × height` RGB triples, row by row.
    pub pixels: Vec<u8>,
}

/// Largest side of an image, pixels.
pub const MAX_SIDE: usize = 8192;

impl Image {
    /// An image of one colour.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Image {
        Image {
            width,
            height,
            pixels: rgb.repeat(width * height),
        }
    }

    /// The colour at (`x`, `y`).
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Sets the colour at (`x`, `y`).
    pub fn set(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        let i = (y * self.width + x) * 3;
        self.pixels[i..i + 3].copy_from_slice(&rgb);
    }

    /// The image as a binary PPM file.
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.pixels);
        out
    }
}

/// A binary PPM image borrowed from its file's bytes.
#[derive(Debug, Clone, Copy)]
pub struct PpmRef<'a> {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// The RGB triples.
    pub pixels: &'a [u8],
}

/// Parses a binary PPM (`P6`, maximum value 255, no comments) without copying its pixels.
pub fn parse_ppm(bytes: &[u8]) -> Result<PpmRef<'_>, String> {
    let bad = |why: String| format!("image: expected a binary PPM (P6 WIDTH HEIGHT 255, then RGB bytes): {why}");
    let mut fields = [0usize; 3];
    let mut at = 0;
    let next_token = |at: &mut usize| -> Option<&[u8]> {
        while bytes.get(*at).is_some_and(u8::is_ascii_whitespace) {
            *at += 1;
        }
        let start = *at;
        while bytes.get(*at).is_some_and(|b| !b.is_ascii_whitespace()) {
            *at += 1;
        }
        (*at > start).then(|| &bytes[start..*at])
    };
    if next_token(&mut at) != Some(b"P6") {
        return Err(bad("it does not start with `P6`".into()));
    }
    for (i, name) in ["width", "height", "maximum value"].iter().enumerate() {
        let token = next_token(&mut at).ok_or_else(|| bad(format!("no {name}")))?;
        fields[i] = std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                bad(format!(
                    "the {name} is not a number: {:?}",
                    String::from_utf8_lossy(token)
                ))
            })?;
    }
    let [width, height, max] = fields;
    if max != 255 {
        return Err(bad(format!("the maximum value is {max}, only 255 is read")));
    }
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(bad(format!(
            "{width}×{height} pixels: each side must be 1 to {MAX_SIDE}"
        )));
    }
    let pixels = bytes.get(at + 1..).unwrap_or_default();
    if pixels.len() != width * height * 3 {
        return Err(bad(format!(
            "{width}×{height} pixels need {} bytes of RGB, there are {}",
            width * height * 3,
            pixels.len()
        )));
    }
    Ok(PpmRef { width, height, pixels })
}

/// What the generated image shows besides the scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// Nothing illegal.
    None,
    /// Large skin-tone areas (what the `adult` classifier flags).
    Adult,
    /// Large blood-red areas (what the `violence` classifier flags).
    Violence,
}

impl Content {
    /// Parses `none`, `adult` or `violence`.
    pub fn parse(s: &str) -> Result<Content, String> {
        match s {
            "none" => Ok(Content::None),
            "adult" => Ok(Content::Adult),
            "violence" => Ok(Content::Violence),
            other => Err(format!(
                "`{other}` is not a content: expected `none`, `adult` or `violence`"
            )),
        }
    }
}

const SKIN: &[[u8; 3]] = &[[224, 172, 140], [198, 134, 66], [241, 194, 125], [141, 85, 36]];
const BLOOD: &[[u8; 3]] = &[[200, 20, 25], [170, 10, 10], [230, 30, 40]];
/// Scene colours: none of them is skin or blood, with noise.
const PALETTE: &[[u8; 3]] = &[
    [40, 60, 160],
    [110, 70, 170],
    [128, 128, 128],
    [30, 140, 140],
    [200, 200, 210],
];
/// Noise added to every scene pixel, ± this much per channel.
const NOISE: i64 = 6;

/// Whether a colour is skin-toned (the classic RGB rule of Kovač et al.).
pub fn is_skin([r, g, b]: [u8; 3]) -> bool {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let (max, min) = (r.max(g).max(b), r.min(g).min(b));
    r > 95 && g > 40 && b > 20 && max - min > 15 && (r - g).abs() > 15 && r > g && r > b
}

/// Whether a colour is a saturated, blood-like red.
pub fn is_blood([r, g, b]: [u8; 3]) -> bool {
    r >= 150 && g <= 70 && b <= 70 && i32::from(r) - i32::from(g.max(b)) >= 100
}

/// The share of `rgb`'s pixels for which `test` holds (0 for no pixels).
pub fn share(rgb: &[u8], test: impl Fn([u8; 3]) -> bool) -> f64 {
    let n = rgb.len() / 3;
    if n == 0 {
        return 0.0;
    }
    let hits = rgb.chunks_exact(3).filter(|p| test([p[0], p[1], p[2]])).count();
    hits as f64 / n as f64
}

/// Share of skin pixels from which `adult` flags an image.
pub const ADULT_THRESHOLD: f64 = 0.15;
/// Share of blood-red pixels from which `violence` flags an image.
pub const VIOLENCE_THRESHOLD: f64 = 0.10;

/// A classifier's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the image is flagged.
    pub illegal: bool,
    /// The share of pixels that matched.
    pub share: f64,
    /// The share from which it flags.
    pub threshold: f64,
}

/// The `adult` classifier: flags an image with at least [`ADULT_THRESHOLD`] skin pixels.
pub fn classify_adult(img: PpmRef<'_>) -> Verdict {
    let share = share(img.pixels, is_skin);
    Verdict {
        illegal: share >= ADULT_THRESHOLD,
        share,
        threshold: ADULT_THRESHOLD,
    }
}

/// The `violence` classifier: flags an image with at least [`VIOLENCE_THRESHOLD`] blood-red
/// pixels.
pub fn classify_violence(img: PpmRef<'_>) -> Verdict {
    let share = share(img.pixels, is_blood);
    Verdict {
        illegal: share >= VIOLENCE_THRESHOLD,
        share,
        threshold: VIOLENCE_THRESHOLD,
    }
}

/// Font pixels are drawn as squares of this many image pixels.
pub const CAPTION_SCALE: usize = 2;
/// Glyph advance, font pixels.
const PITCH: usize = GLYPH_W + 1;
/// Line advance, font pixels.
const LINE: usize = GLYPH_H + 2;
/// Space around the caption's text, image pixels.
const MARGIN: usize = 8;
/// The caption's colours.
const PAPER: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [0, 0, 0];

/// Characters per caption line in an image `width` pixels wide.
pub fn caption_columns(width: usize) -> usize {
    width.saturating_sub(2 * MARGIN) / (PITCH * CAPTION_SCALE)
}

/// `text` (already [normalised](normalise)) cut into lines of at most `columns` characters,
/// between words where it can.
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        // Normalised text is ASCII: byte offsets are character boundaries.
        let mut word = word;
        loop {
            if line.is_empty() {
                if word.len() <= columns {
                    line.push_str(word);
                    break;
                }
                lines.push(word[..columns].to_owned());
                word = &word[columns..];
            } else if line.len() + 1 + word.len() <= columns {
                line.push(' ');
                line.push_str(word);
                break;
            } else {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Draws `text` as a caption band at the bottom of `img`: black glyphs on white, full width.
/// Fails when the text needs more than half the image's height.
pub fn draw_caption(img: &mut Image, text: &str) -> Result<(), String> {
    let text = normalise(text);
    if text.is_empty() {
        return Ok(());
    }
    let columns = caption_columns(img.width);
    if columns == 0 {
        return Err(format!("an image {} pixels wide has no room for a caption", img.width));
    }
    let lines = wrap(&text, columns);
    let band = 2 * MARGIN + lines.len() * LINE * CAPTION_SCALE;
    if band > img.height / 2 {
        return Err(format!(
            "a text of {} characters needs {} caption lines of {columns} characters ({band} pixels), more than half \
             of the {}-pixel image height: shorten the text or make the image larger",
            text.len(),
            lines.len(),
            img.height
        ));
    }
    let top = img.height - band;
    for y in top..img.height {
        for x in 0..img.width {
            img.set(x, y, PAPER);
        }
    }
    for (l, line) in lines.iter().enumerate() {
        let y0 = top + MARGIN + l * LINE * CAPTION_SCALE;
        for (k, c) in line.chars().enumerate() {
            let bits = glyph(c).unwrap_or_default();
            let x0 = MARGIN + k * PITCH * CAPTION_SCALE;
            for gy in 0..GLYPH_H {
                for gx in 0..GLYPH_W {
                    if pixel(bits, gx, gy) {
                        for dy in 0..CAPTION_SCALE {
                            for dx in 0..CAPTION_SCALE {
                                img.set(x0 + gx * CAPTION_SCALE + dx, y0 + gy * CAPTION_SCALE + dy, INK);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads the caption [`draw_caption`] drew: finds the band of pure black-and-white rows at
/// the bottom, cuts it into lines and glyph cells, and reads each cell as the nearest glyph
/// of the font. Returns the text (lines joined by spaces), or an empty string when the image
/// has no caption.
pub fn read_caption(img: PpmRef<'_>) -> String {
    let row_len = img.width * 3;
    let is_band_row = |y: usize| {
        img.pixels[y * row_len..(y + 1) * row_len]
            .chunks_exact(3)
            .all(|p| p == PAPER || p == INK)
    };
    let band = (0..img.height).rev().take_while(|&y| is_band_row(y)).count();
    let line_px = LINE * CAPTION_SCALE;
    if band < 2 * MARGIN + line_px {
        return String::new();
    }
    let lines = (band - 2 * MARGIN) / line_px;
    let top = img.height - band;
    let ink = |x: usize, y: usize| {
        let i = y * row_len + x * 3;
        img.pixels[i..i + 3] == INK
    };
    let mut out: Vec<String> = Vec::new();
    for l in 0..lines {
        let y0 = top + MARGIN + l * line_px;
        let mut line = String::new();
        for k in 0..caption_columns(img.width) {
            let x0 = MARGIN + k * PITCH * CAPTION_SCALE;
            let mut bits = 0u64;
            for gy in 0..GLYPH_H {
                for gx in 0..GLYPH_W {
                    // The middle of the font pixel's square.
                    let set = ink(
                        x0 + gx * CAPTION_SCALE + CAPTION_SCALE / 2,
                        y0 + gy * CAPTION_SCALE + CAPTION_SCALE / 2,
                    );
                    bits = (bits << 1) | u64::from(set);
                }
            }
            line.push(recognise(bits).0);
        }
        let line = line.trim_end();
        if !line.is_empty() {
            out.push(line.to_owned());
        }
    }
    out.join(" ")
}

/// Generates the recognizer's input: a `width × height` scene drawn from `seed` (a sky and a
/// ground gradient, rectangles and discs, per-pixel noise), with large skin-tone or blood-red
/// areas as `content` asks, and `text` as a caption at the bottom.
pub fn generate(seed: u64, width: usize, height: usize, content: Content, text: &str) -> Result<Image, String> {
    if !(16..=MAX_SIDE).contains(&width) || !(16..=MAX_SIDE).contains(&height) {
        return Err(format!(
            "an image of {width}×{height}: each side must be from 16 to {MAX_SIDE} pixels"
        ));
    }
    let mut rng = Rng::new(seed);
    let mut img = Image::filled(width, height, [0, 0, 0]);
    let horizon = height * (45 + rng.index(20)) / 100;
    for y in 0..height {
        let (from, to, t, span) = if y < horizon {
            ([70, 130, 220], [150, 190, 240], y, horizon)
        } else {
            ([50, 130, 60], [90, 160, 70], y - horizon, height - horizon)
        };
        let c: [u8; 3] = std::array::from_fn(|i| {
            (i64::from(from[i]) + (i64::from(to[i]) - i64::from(from[i])) * t as i64 / span.max(1) as i64) as u8
        });
        for x in 0..width {
            img.set(x, y, c);
        }
    }
    let (w, h) = (width as i64, height as i64);
    for _ in 0..6 + rng.index(6) {
        let color = *rng.pick(PALETTE);
        let (cx, cy) = (rng.range(0, w - 1), rng.range(0, h - 1));
        let (rx, ry) = (rng.range(w / 30 + 1, w / 8 + 1), rng.range(h / 30 + 1, h / 8 + 1));
        if rng.chance(0.5) {
            fill_ellipse(&mut img, cx, cy, rx, ry, color);
        } else {
            fill_rect(&mut img, cx - rx, cy - ry, cx + rx, cy + ry, color);
        }
    }
    match content {
        Content::None => {}
        Content::Adult => blobs(&mut img, &mut rng, SKIN, 3),
        Content::Violence => blobs(&mut img, &mut rng, BLOOD, 6),
    }
    for p in img.pixels.chunks_exact_mut(3) {
        for v in p {
            *v = (i64::from(*v) + rng.range(-NOISE, NOISE)).clamp(1, 254) as u8;
        }
    }
    draw_caption(&mut img, text)?;
    Ok(img)
}

/// A large ellipse in the middle (half the width, two thirds of the height: a quarter of the
/// image) and `extra` smaller ones around it, in colours of `palette`.
fn blobs(img: &mut Image, rng: &mut Rng, palette: &[[u8; 3]], extra: usize) {
    let (w, h) = (img.width as i64, img.height as i64);
    let color = *rng.pick(palette);
    fill_ellipse(img, w / 2, h / 2, w / 4, h / 3, color);
    for _ in 0..extra {
        let color = *rng.pick(palette);
        let (cx, cy) = (rng.range(w / 8, w * 7 / 8), rng.range(h / 8, h * 7 / 8));
        fill_ellipse(img, cx, cy, rng.range(w / 20, w / 8), rng.range(h / 20, h / 8), color);
    }
}

fn fill_rect(img: &mut Image, x0: i64, y0: i64, x1: i64, y1: i64, color: [u8; 3]) {
    let (w, h) = (img.width as i64, img.height as i64);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.set(x as usize, y as usize, color);
        }
    }
}

fn fill_ellipse(img: &mut Image, cx: i64, cy: i64, rx: i64, ry: i64, color: [u8; 3]) {
    let (w, h) = (img.width as i64, img.height as i64);
    let (rx, ry) = (rx.max(1), ry.max(1));
    for y in (cy - ry).max(0)..(cy + ry + 1).min(h) {
        let fy = (y - cy) as f64 / ry as f64;
        let half = (rx as f64 * (1.0 - fy * fy).max(0.0).sqrt()) as i64;
        for x in (cx - half).max(0)..(cx + half + 1).min(w) {
            img.set(x as usize, y as usize, color);
        }
    }
}

/// Pixelates `img` in blocks of `block × block` pixels (smaller at the right and bottom
/// edges), each filled with its average colour.
pub fn mosaic(img: PpmRef<'_>, block: usize) -> Image {
    let block = block.max(1);
    let (w, h) = (img.width, img.height);
    let mut out = Image {
        width: w,
        height: h,
        pixels: vec![0; img.pixels.len()],
    };
    for by in (0..h).step_by(block) {
        for bx in (0..w).step_by(block) {
            let (x1, y1) = ((bx + block).min(w), (by + block).min(h));
            let mut sum = [0u64; 3];
            for y in by..y1 {
                for p in img.pixels[(y * w + bx) * 3..(y * w + x1) * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(p[c]);
                    }
                }
            }
            let n = ((x1 - bx) * (y1 - by)) as u64;
            let avg: [u8; 3] = std::array::from_fn(|c| ((sum[c] + n / 2) / n) as u8);
            for y in by..y1 {
                for p in out.pixels[(y * w + bx) * 3..(y * w + x1) * 3].chunks_exact_mut(3) {
                    p.copy_from_slice(&avg);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(img: &Image) -> PpmRef<'_> {
        PpmRef {
            width: img.width,
            height: img.height,
            pixels: &img.pixels,
        }
    }

    #[test]
    fn ppm_round_trip_and_errors() {
        let mut img = Image::filled(3, 2, [1, 2, 3]);
        img.set(2, 1, [9, 8, 7]);
        let ppm = img.to_ppm();
        assert!(ppm.starts_with(b"P6\n3 2\n255\n"));
        let back = parse_ppm(&ppm).unwrap();
        assert_eq!((back.width, back.height, back.pixels), (3, 2, &img.pixels[..]));
        assert!(
            parse_ppm(b"P5\n1 1\n255\n\0")
                .unwrap_err()
                .contains("does not start with `P6`")
        );
        assert!(
            parse_ppm(b"P6\n1 x\n255\n")
                .unwrap_err()
                .contains("the height is not a number")
        );
        assert!(parse_ppm(b"P6\n1 1\n65535\n").unwrap_err().contains("only 255"));
        assert!(
            parse_ppm(b"P6\n2 1\n255\n\0\0\0")
                .unwrap_err()
                .contains("need 6 bytes of RGB, there are 3")
        );
    }

    #[test]
    fn classifiers_on_crafted_images() {
        let mut img = Image::filled(10, 10, [40, 60, 160]);
        assert_eq!(classify_adult(view(&img)).share, 0.0);
        for x in 0..10 {
            img.set(x, 0, [224, 172, 140]);
            img.set(x, 1, [224, 172, 140]);
        }
        let a = classify_adult(view(&img));
        assert_eq!((a.illegal, a.share), (true, 0.2));
        assert!(!classify_violence(view(&img)).illegal, "skin is not blood");
        img.set(0, 5, [200, 20, 25]);
        let v = classify_violence(view(&img));
        assert_eq!((v.illegal, v.share), (false, 0.01));
        for x in 0..10 {
            img.set(x, 9, [170, 10, 10]);
        }
        assert_eq!(classify_violence(view(&img)).share, 0.11);
        assert!(classify_violence(view(&img)).illegal);
        assert!(!is_skin([128, 128, 128]) && !is_skin([255, 255, 255]) && !is_blood([200, 120, 120]));
    }

    #[test]
    fn generated_images_are_flagged_as_asked() {
        for seed in 0..4 {
            let none = generate(seed, 320, 240, Content::None, "").unwrap();
            let adult = generate(seed, 320, 240, Content::Adult, "").unwrap();
            let violence = generate(seed, 320, 240, Content::Violence, "").unwrap();
            for (img, a, v) in [(&none, false, false), (&adult, true, false), (&violence, false, true)] {
                let (ca, cv) = (classify_adult(view(img)), classify_violence(view(img)));
                assert_eq!((ca.illegal, cv.illegal), (a, v), "seed {seed}: {ca:?} {cv:?}");
            }
            assert_eq!(none, generate(seed, 320, 240, Content::None, "").unwrap());
        }
        assert!(generate(1, 8, 100, Content::None, "").unwrap_err().contains("from 16"));
    }

    #[test]
    fn the_caption_round_trips() {
        let text = "El hombre lleva una PISTOLA, y una bomba! 42 veces - 'no?'";
        for (w, h) in [(640, 480), (120, 400)] {
            let img = generate(7, w, h, Content::None, text).unwrap();
            assert_eq!(read_caption(view(&img)), normalise(text), "{w}×{h}");
        }
        let long = "palabra ".repeat(40);
        let err = generate(7, 200, 100, Content::None, &long).unwrap_err();
        assert!(err.contains("more than half of the 100-pixel image height"), "{err}");
        let plain = generate(7, 64, 64, Content::None, "").unwrap();
        assert_eq!(read_caption(view(&plain)), "");
        // A word longer than a line is cut.
        assert_eq!(wrap("abcdefgh ij", 3), ["abc", "def", "gh", "ij"]);
    }

    #[test]
    fn mosaic_averages_blocks() {
        let mut img = Image::filled(5, 3, [10, 10, 10]);
        img.set(0, 0, [30, 50, 70]);
        img.set(4, 2, [100, 0, 0]);
        let m = mosaic(view(&img), 2);
        // Block (0,0)-(1,1): (30+10·3)/4 = 15, (50+30)/4 = 20, (70+30)/4 = 25.
        assert_eq!(m.get(0, 0), [15, 20, 25]);
        assert_eq!(m.get(1, 1), [15, 20, 25]);
        assert_eq!(m.get(2, 0), [10, 10, 10]);
        // The 1×1 corner block keeps its pixel.
        assert_eq!(m.get(4, 2), [100, 0, 0]);
        assert_eq!(m.get(3, 2), [10, 10, 10]);
        assert_eq!(mosaic(view(&img), 1), img);
    }
}
