//! The local renderer: a deterministic filter standing in for an AI provider in the local API and tests.
//!
//! The template's `localEffect` parameter picks the filter (grayscale when absent or unknown). The result is
//! marked as what it is, never passed off as AI: a band of diagonal yellow and black stripes along the bottom
//! edge, and a PNG `tEXt` chunk `Software=Facemake local preview (not AI)`.

use std::io::Cursor;

use async_trait::async_trait;
use image::codecs::png::PngEncoder;
use image::{GrayImage, ImageEncoder, ImageReader, Luma, Rgb, RgbImage};

use super::{refused, transient, LOCAL_EFFECT_PARAM};
use crate::ports::{ImageProvider, ProviderError, RefusalKind, RenderRequest, RenderedImage};

/// The filters, by their `localEffect` names.
pub const EFFECTS: [&str; 12] = [
    "grayscale",
    "sepia",
    "duotone",
    "posterize",
    "pixelate",
    "blur",
    "invert",
    "vignette",
    "sketch",
    "pop-art",
    "warm",
    "cool",
];

/// The PNG text chunk naming the renderer.
pub const SOFTWARE_TEXT: &str = "Facemake local preview (not AI)";

/// The band's height as a share of the image's, in percent.
const BAND_PERCENT: u32 = 6;
const BAND_YELLOW: Rgb<u8> = Rgb([255, 204, 0]);
const BAND_BLACK: Rgb<u8> = Rgb([0, 0, 0]);

#[derive(Debug, Clone, Copy, Default)]
pub struct LocalRenderer;

impl LocalRenderer {
    /// Applies `effect` to the photo and returns the labelled PNG. Pure: the same input gives the same bytes.
    pub fn render_png(photo: &[u8], effect: Option<&str>) -> Result<Vec<u8>, ProviderError> {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(256 * 1024 * 1024);
        let mut reader = ImageReader::new(Cursor::new(photo))
            .with_guessed_format()
            .map_err(|e| refused(RefusalKind::InvalidInput, format!("local renderer: {e}")))?;
        reader.limits(limits);
        let input = reader
            .decode()
            .map_err(|e| refused(RefusalKind::InvalidInput, format!("local renderer cannot read the photo: {e}")))?
            .into_rgb8();
        let mut output = apply(effect.unwrap_or("grayscale"), input);
        draw_band(&mut output);
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(output.as_raw(), output.width(), output.height(), image::ExtendedColorType::Rgb8)
            .map_err(|e| transient(format!("local renderer: encoding failed: {e}"), None))?;
        Ok(with_text_chunk(png, "Software", SOFTWARE_TEXT))
    }
}

#[async_trait]
impl ImageProvider for LocalRenderer {
    fn needs_image_url(&self) -> bool {
        false
    }

    async fn render(&self, request: RenderRequest<'_>) -> Result<RenderedImage, ProviderError> {
        // One photo is enough for a stand-in: the first (a character's others are not used).
        let photo =
            request.images.first().cloned().ok_or_else(|| {
                super::configuration("the local renderer needs a photo and none was given".to_owned())
            })?;
        let effect = request.spec.params.get(LOCAL_EFFECT_PARAM).and_then(|v| v.as_str()).map(str::to_owned);
        // Filters on a 1536-pixel photo take tens of milliseconds: off the async threads.
        let bytes = tokio::task::spawn_blocking(move || Self::render_png(&photo, effect.as_deref()))
            .await
            .map_err(|e| transient(format!("local renderer: {e}"), None))??;
        Ok(RenderedImage { bytes, content_type: "image/png".to_owned() })
    }
}

/// Applies a filter by name; unknown names are grayscale.
fn apply(effect: &str, image: RgbImage) -> RgbImage {
    match effect {
        "sepia" => map_pixels(image, sepia),
        "duotone" => map_pixels(image, |p| mix(Rgb([30, 12, 75]), Rgb([255, 100, 190]), luma(p))),
        "posterize" => map_pixels(image, |p| Rgb(p.0.map(|c| (c / 64) * 85))),
        "pixelate" => pixelate(image),
        "blur" => {
            let sigma = (image.width().max(image.height()) as f32 / 150.0).max(2.0);
            image::imageops::fast_blur(&image, sigma)
        }
        "invert" => map_pixels(image, |p| Rgb(p.0.map(|c| 255 - c))),
        "vignette" => vignette(image),
        "sketch" => sketch(&image),
        "pop-art" => map_pixels(image, pop_art),
        "warm" => map_pixels(image, |Rgb([r, g, b])| Rgb([scale(r, 112, 10), scale(g, 104, 0), scale(b, 85, 0)])),
        "cool" => map_pixels(image, |Rgb([r, g, b])| Rgb([scale(r, 85, 0), scale(g, 100, 0), scale(b, 112, 10)])),
        _ => map_pixels(image, |p| {
            let l = luma(p);
            Rgb([l, l, l])
        }),
    }
}

fn map_pixels(mut image: RgbImage, f: impl Fn(Rgb<u8>) -> Rgb<u8>) -> RgbImage {
    for p in image.pixels_mut() {
        *p = f(*p);
    }
    image
}

/// Rec. 601 luma.
fn luma(Rgb([r, g, b]): Rgb<u8>) -> u8 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000) as u8
}

/// `c * percent / 100 + add`, clamped.
fn scale(c: u8, percent: u32, add: u32) -> u8 {
    (u32::from(c) * percent / 100 + add).min(255) as u8
}

/// The colour `t/255` of the way from `dark` to `light`.
fn mix(dark: Rgb<u8>, light: Rgb<u8>, t: u8) -> Rgb<u8> {
    let t = i32::from(t);
    let ch = |i: usize| (i32::from(dark.0[i]) + (i32::from(light.0[i]) - i32::from(dark.0[i])) * t / 255) as u8;
    Rgb([ch(0), ch(1), ch(2)])
}

fn sepia(Rgb([r, g, b]): Rgb<u8>) -> Rgb<u8> {
    let (r, g, b) = (u32::from(r), u32::from(g), u32::from(b));
    let ch = |wr: u32, wg: u32, wb: u32| ((wr * r + wg * g + wb * b) / 1000).min(255) as u8;
    Rgb([ch(393, 769, 189), ch(349, 686, 168), ch(272, 534, 131)])
}

/// Four flat inks by brightness, like a screen print.
fn pop_art(p: Rgb<u8>) -> Rgb<u8> {
    match luma(p) {
        0..=63 => Rgb([25, 22, 70]),
        64..=127 => Rgb([230, 30, 70]),
        128..=191 => Rgb([255, 205, 0]),
        _ => Rgb([250, 245, 230]),
    }
}

/// Blocks of about a 48th of the long side, each its average colour.
fn pixelate(mut image: RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let block = (w.max(h) / 48).max(4);
    for by in (0..h).step_by(block as usize) {
        for bx in (0..w).step_by(block as usize) {
            let (x_end, y_end) = ((bx + block).min(w), (by + block).min(h));
            let mut sum = [0u64; 3];
            for y in by..y_end {
                for x in bx..x_end {
                    for (s, c) in sum.iter_mut().zip(image.get_pixel(x, y).0) {
                        *s += u64::from(c);
                    }
                }
            }
            let n = u64::from((x_end - bx) * (y_end - by));
            let average = Rgb(sum.map(|s| (s / n) as u8));
            for y in by..y_end {
                for x in bx..x_end {
                    image.put_pixel(x, y, average);
                }
            }
        }
    }
    image
}

/// Darkens towards the corners: 35% darker at the very corner, untouched at the centre.
fn vignette(mut image: RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let (cx, cy) = (i64::from(w) / 2, i64::from(h) / 2);
    let max_d2 = (cx * cx + cy * cy).max(1);
    for (x, y, p) in image.enumerate_pixels_mut() {
        let (dx, dy) = (i64::from(x) - cx, i64::from(y) - cy);
        let keep = 1000 - 350 * (dx * dx + dy * dy) / max_d2;
        *p = Rgb(p.0.map(|c| (i64::from(c) * keep / 1000) as u8));
    }
    image
}

/// A pencil sketch: the grayscale photo colour-dodged with its blurred negative.
fn sketch(image: &RgbImage) -> RgbImage {
    let gray = GrayImage::from_fn(image.width(), image.height(), |x, y| Luma([luma(*image.get_pixel(x, y))]));
    let negative = GrayImage::from_fn(gray.width(), gray.height(), |x, y| Luma([255 - gray.get_pixel(x, y).0[0]]));
    let sigma = (image.width().max(image.height()) as f32 / 200.0).max(2.0);
    let blurred = image::imageops::fast_blur(&negative, sigma);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let base = u32::from(gray.get_pixel(x, y).0[0]);
        let blend = u32::from(blurred.get_pixel(x, y).0[0]);
        let v = if blend >= 255 { 255 } else { (base * 255 / (255 - blend)).min(255) as u8 };
        Rgb([v, v, v])
    })
}

/// The "local preview" band: diagonal yellow and black stripes over the bottom 6% of the image.
fn draw_band(image: &mut RgbImage) {
    let (w, h) = image.dimensions();
    let band = band_height(h);
    let stripe = (band / 2).max(2);
    for y in h - band..h {
        for x in 0..w {
            let colour = if ((x + y) / stripe) % 2 == 0 { BAND_YELLOW } else { BAND_BLACK };
            image.put_pixel(x, y, colour);
        }
    }
}

fn band_height(height: u32) -> u32 {
    height.saturating_mul(BAND_PERCENT).div_ceil(100).max(4).min(height)
}

/// Inserts a `tEXt` chunk right after a PNG's IHDR (the encoder writes none). Returns the PNG unchanged if it
/// does not start with a signature and an IHDR.
fn with_text_chunk(png: Vec<u8>, keyword: &str, text: &str) -> Vec<u8> {
    const IHDR_END: usize = 8 + 4 + 4 + 13 + 4;
    if png.len() < IHDR_END || &png[12..16] != b"IHDR" {
        return png;
    }
    let mut body = Vec::with_capacity(4 + keyword.len() + 1 + text.len());
    body.extend_from_slice(b"tEXt");
    body.extend_from_slice(keyword.as_bytes());
    body.push(0);
    body.extend_from_slice(text.as_bytes());
    let mut out = Vec::with_capacity(png.len() + body.len() + 8);
    out.extend_from_slice(&png[..IHDR_END]);
    out.extend_from_slice(&((body.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out.extend_from_slice(&png[IHDR_END..]);
    out
}

/// CRC-32 as PNG chunks use it (ISO-HDLC, reflected, polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{GenerationSpec, Provider};

    /// A colourful 96×64 JPEG: gradients with a fine checkerboard, so every filter has something to change.
    fn photo() -> Vec<u8> {
        let img = RgbImage::from_fn(96, 64, |x, y| {
            let check = if (x / 3 + y / 3) % 2 == 0 { 50 } else { 0 };
            Rgb([(x * 2 + check) as u8, (y * 3 + check) as u8, (200 - x - check) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).encode_image(&img).unwrap();
        out
    }

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap().into_rgb8()
    }

    #[test]
    fn crc_matches_the_png_reference() {
        // The CRC of an IEND chunk's type, as every PNG ends with it.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn rendering_is_deterministic() {
        let photo = photo();
        for effect in EFFECTS {
            let a = LocalRenderer::render_png(&photo, Some(effect)).unwrap();
            let b = LocalRenderer::render_png(&photo, Some(effect)).unwrap();
            assert_eq!(a, b, "{effect}");
        }
    }

    #[test]
    fn every_effect_changes_the_photo_and_keeps_its_size() {
        let photo = photo();
        let original = image::load_from_memory(&photo).unwrap().into_rgb8();
        let above_band = 64 - band_height(64);
        let mut outputs = Vec::new();
        for effect in EFFECTS {
            let out = decode(&LocalRenderer::render_png(&photo, Some(effect)).unwrap());
            assert_eq!(out.dimensions(), (96, 64), "{effect}");
            let changed = (0..above_band)
                .flat_map(|y| (0..96).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    let (a, b) = (original.get_pixel(x, y).0, out.get_pixel(x, y).0);
                    a.iter().zip(b).any(|(&a, b)| a.abs_diff(b) > 8)
                })
                .count();
            assert!(changed > 96 * above_band as usize / 10, "{effect} changed only {changed} pixels");
            outputs.push(out);
        }
        for (i, a) in outputs.iter().enumerate() {
            for (j, b) in outputs.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {} look the same", EFFECTS[i], EFFECTS[j]);
            }
        }
    }

    #[test]
    fn unknown_or_missing_effects_are_grayscale() {
        let photo = photo();
        let gray = LocalRenderer::render_png(&photo, Some("grayscale")).unwrap();
        assert_eq!(LocalRenderer::render_png(&photo, Some("holographic")).unwrap(), gray);
        assert_eq!(LocalRenderer::render_png(&photo, None).unwrap(), gray);
    }

    #[test]
    fn the_preview_band_and_text_chunk_are_present() {
        let png = LocalRenderer::render_png(&photo(), Some("warm")).unwrap();
        let chunk: &[u8] = b"tEXtSoftware\0Facemake local preview (not AI)";
        assert!(png.windows(chunk.len()).any(|w| w == chunk));
        let out = decode(&png); // the decoder checks the chunk's CRC
        let band = band_height(64);
        assert_eq!(band, 4);
        let bottom: Vec<Rgb<u8>> = (0..96).map(|x| *out.get_pixel(x, 63)).collect();
        assert!(bottom.contains(&BAND_YELLOW) && bottom.contains(&BAND_BLACK));
        for y in 64 - band..64 {
            for x in 0..96 {
                let p = *out.get_pixel(x, y);
                assert!(p == BAND_YELLOW || p == BAND_BLACK, "({x}, {y}) = {p:?}");
            }
        }
        // Diagonal: the colour at a point matches the one a stripe-width step along the other diagonal.
        assert_eq!(out.get_pixel(10, 62), out.get_pixel(11, 61));
    }

    #[tokio::test]
    async fn renders_through_the_port_as_png() {
        let spec = GenerationSpec {
            provider: Provider::Openai,
            model: "gpt-image-1".into(),
            prompt: "p".into(),
            params: BTreeMap::from([("localEffect".to_owned(), serde_json::json!("sepia"))]),
        };
        let photo = photo();
        let rendered = LocalRenderer
            .render(RenderRequest {
                spec: &spec,
                images: std::slice::from_ref(&photo),
                image_urls: &[],
                job_id: "g1",
                time_left: std::time::Duration::from_secs(60),
            })
            .await
            .unwrap();
        assert_eq!(rendered.content_type, "image/png");
        assert_eq!(rendered.bytes, LocalRenderer::render_png(&photo, Some("sepia")).unwrap());
        assert!(!LocalRenderer.needs_image_url());
    }

    #[tokio::test]
    async fn a_photo_that_is_no_image_is_invalid_input() {
        assert!(matches!(
            LocalRenderer::render_png(b"hello", None),
            Err(ProviderError::Permanent { kind: RefusalKind::InvalidInput, .. })
        ));
    }
}
