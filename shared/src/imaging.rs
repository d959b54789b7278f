//! Photo preparation: what the app uploads becomes a small, upright JPEG without metadata before any provider
//! sees it.
//!
//! The format is read from the bytes (never from a declared type), the dimensions from the header before any
//! pixel is decoded (a 10 000 × 10 000 PNG of one colour is a few kilobytes on disk and 400 MB in memory), the
//! EXIF orientation is applied, the long side is capped, and the result is re-encoded: the new JPEG carries no
//! EXIF, GPS, XMP or ICC data.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// What [`prepare`] accepts and produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareLimits {
    /// The largest upload read at all.
    pub max_input_bytes: u64,
    /// The most pixels decoded (width × height, read from the header first).
    pub max_pixels: u64,
    /// The longest side of the prepared photo; larger photos are scaled down, smaller ones left alone.
    pub max_side: u32,
}

impl Default for PrepareLimits {
    fn default() -> Self {
        Self { max_input_bytes: 10 * 1024 * 1024, max_pixels: 40_000_000, max_side: 1536 }
    }
}

/// A prepared photo: JPEG, upright, without metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct Prepared {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("jpeg_bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Why a photo was refused. `Display` is for the logs; [`ImageError::user_reason`] is for the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not an image")]
    NotAnImage,
    #[error("unsupported image format: {0}")]
    UnsupportedFormat(String),
    #[error("too many pixels: {width}x{height}")]
    TooManyPixels { width: u32, height: u32 },
    #[error("file too large: {bytes} bytes")]
    TooLarge { bytes: u64 },
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

impl ImageError {
    /// One sentence for the app's user, without internals.
    pub fn user_reason(&self) -> String {
        match self {
            Self::NotAnImage => "The uploaded file is not a photo (JPEG or PNG).",
            Self::UnsupportedFormat(_) => "This photo format is not supported. Please use a JPEG or PNG photo.",
            Self::TooManyPixels { .. } => "The photo's resolution is too high. Please use a smaller photo.",
            Self::TooLarge { .. } => "The photo file is too large. Please use a smaller photo.",
            Self::Corrupt(_) => "The photo could not be read. It may be damaged or incompletely uploaded.",
        }
        .to_owned()
    }
}

/// No side of an accepted input may be longer than this, whatever its pixel count (a 40 000 × 1 strip is no
/// photo, and the limit is passed to the decoders as a second line of defence).
const MAX_INPUT_SIDE: u32 = 32_768;

/// JPEG quality of the prepared photo: visually lossless for a provider's input, a few hundred kilobytes.
const JPEG_QUALITY: u8 = 90;

/// The content type of an image from its magic bytes: `image/jpeg`, `image/png`, `image/webp` or `image/heic`.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const HEIF_BRANDS: [&[u8; 4]; 10] =
        [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"];
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" && HEIF_BRANDS.iter().any(|b| &bytes[8..12] == *b) {
        Some("image/heic")
    } else {
        None
    }
}

/// Turns an upload into the photo the providers get. See the module documentation.
pub fn prepare(bytes: &[u8], limits: &PrepareLimits) -> Result<Prepared, ImageError> {
    let len = bytes.len() as u64;
    if len > limits.max_input_bytes {
        return Err(ImageError::TooLarge { bytes: len });
    }
    let format = accepted_format(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageError::Corrupt("jpeg ends before its end-of-image marker".to_owned()));
    }

    // Stage 1: a decoder that has read the header only, under an allocation cap.
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(max_alloc(limits));
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(header_error)?;

    // Stage 2: refuse decompression bombs before a single pixel is decoded.
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels
        || width > MAX_INPUT_SIDE
        || height > MAX_INPUT_SIDE
        || decoder.total_bytes() > max_alloc(limits)
    {
        return Err(ImageError::TooManyPixels { width, height });
    }
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(MAX_INPUT_SIDE);
    decode_limits.max_image_height = Some(MAX_INPUT_SIDE);
    decode_limits.max_alloc = Some(max_alloc(limits));
    decoder.set_limits(decode_limits).map_err(|_| ImageError::TooManyPixels { width, height })?;

    // Stage 3: decode, downsize, turn upright, re-encode without metadata.
    // A broken EXIF block is no reason to refuse a photo: it is shown as stored.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => ImageError::TooManyPixels { width, height },
        other => ImageError::Corrupt(other.to_string()),
    })?;
    // Rotation does not change the long side, so the cheaper order is: shrink, then rotate.
    let mut rgb = DynamicImage::ImageRgb8(downsize(flatten(image), limits.max_side)?);
    rgb.apply_orientation(orientation);
    let rgb = rgb.into_rgb8();

    let mut jpeg = Vec::with_capacity(256 * 1024);
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|e| ImageError::Corrupt(format!("re-encoding failed: {e}")))?;
    Ok(Prepared { jpeg, width: rgb.width(), height: rgb.height() })
}

/// The decoded buffer may take 4 bytes a pixel at the pixel limit (8-bit RGBA). 16-bit photos of that size are
/// refused too: none comes from a phone camera.
fn max_alloc(limits: &PrepareLimits) -> u64 {
    limits.max_pixels.saturating_mul(4)
}

fn accepted_format(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    match sniff(bytes) {
        Some("image/jpeg") => Ok(ImageFormat::Jpeg),
        Some("image/png") => Ok(ImageFormat::Png),
        Some("image/webp") => Ok(ImageFormat::WebP),
        Some("image/heic") => Err(ImageError::UnsupportedFormat("HEIC".to_owned())),
        _ => match image::guess_format(bytes) {
            Ok(other) => Err(ImageError::UnsupportedFormat(format!("{other:?}").to_uppercase())),
            Err(_) => Err(ImageError::NotAnImage),
        },
    }
}

/// A header that cannot be read is a corrupt file; a header the limits refuse is too big.
fn header_error(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Limits(_) => ImageError::TooManyPixels { width: 0, height: 0 },
        image::ImageError::Unsupported(u) => ImageError::UnsupportedFormat(u.to_string()),
        other => ImageError::Corrupt(other.to_string()),
    }
}

/// Whether a JPEG's segments run from SOI to an EOI marker. The decoder is lenient and would turn a
/// half-uploaded photo into a half-grey one; walking the markers catches that without decoding. Bytes after
/// EOI (the video of a "motion photo", padding) are allowed.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    let mut in_scan = false;
    while i + 1 < bytes.len() {
        if in_scan {
            // Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte), a restart marker or a real marker.
            if bytes[i] != 0xFF {
                i += 1;
                continue;
            }
            match bytes[i + 1] {
                0x00 | 0xD0..=0xD7 | 0xFF => {
                    i += if bytes[i + 1] == 0xFF { 1 } else { 2 };
                    continue;
                }
                _ => in_scan = false,
            }
        }
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => i += 2, // stand-alone markers
            _ => {
                let Some(len) = bytes.get(i + 2..i + 4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    return false;
                };
                if len < 2 {
                    return false;
                }
                i += 2 + len;
                in_scan = marker == 0xDA;
            }
        }
    }
    false
}

/// RGB with any transparency composited over white (providers and JPEG have no alpha; black would show).
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let over_white = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([over_white(p[0]), over_white(p[1]), over_white(p[2])])
    })
}

/// Scales down so the longer side is at most `max_side`, keeping the aspect ratio; never scales up.
pub fn downsize(image: RgbImage, max_side: u32) -> Result<RgbImage, ImageError> {
    use fast_image_resize as fir;
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if long <= max_side || max_side == 0 {
        return Ok(image);
    }
    let scale = |side: u32| ((u64::from(side) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long)) as u32;
    let (nw, nh) = (scale(w).clamp(1, max_side), scale(h).clamp(1, max_side));
    let failed = |e: &dyn std::fmt::Display| ImageError::Corrupt(format!("downsizing failed: {e}"));
    let src = fir::images::Image::from_vec_u8(w, h, image.into_raw(), fir::PixelType::U8x3).map_err(|e| failed(&e))?;
    let mut dst = fir::images::Image::new(nw, nh, fir::PixelType::U8x3);
    // Bilinear with a support scaled to the shrink factor (what the image crate calls Triangle): free of
    // ringing around faces; SIMD makes it about ten times the image crate's speed on a 12 MP photo.
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new().resize(&src, &mut dst, &options).map_err(|e| failed(&e))?;
    RgbImage::from_raw(nw, nh, dst.into_vec()).ok_or_else(|| failed(&"the resized buffer has the wrong size"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::png::PngEncoder;
    use image::{ImageBuffer, ImageEncoder, Rgb};

    fn jpeg_of(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 95).encode_image(img).unwrap();
        out
    }

    fn png_of(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The markers of a JPEG's header segments, up to the first scan.
    fn header_markers(jpeg: &[u8]) -> Vec<u8> {
        let mut markers = Vec::new();
        let mut i = 2;
        while i + 4 <= jpeg.len() {
            assert_eq!(jpeg[i], 0xFF, "segment at {i}");
            let marker = jpeg[i + 1];
            markers.push(marker);
            if marker == 0xDA {
                break;
            }
            i += 2 + usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        }
        markers
    }

    /// A minimal EXIF block as an APP1 segment: Orientation = 6 (rotate 90° clockwise to display) and a GPS IFD
    /// with a latitude and a processing method whose value holds the ASCII bytes "GPS".
    ///
    /// TIFF offsets are from the start of the TIFF header (big-endian, "MM"):
    /// ```text
    ///   0  4D 4D 00 2A 00000008                    header: big-endian, IFD0 at 8
    ///   8  0002                                    IFD0: 2 entries
    ///  10  0112 0003 00000001 0006 0000            Orientation, SHORT, 1, = 6
    ///  22  8825 0004 00000001 00000026             GPSInfo IFD pointer, LONG, 1, -> 38
    ///  34  00000000                                no next IFD
    ///  38  0003                                    GPS IFD: 3 entries
    ///  40  0001 0002 00000002 4E000000             GPSLatitudeRef, ASCII, 2, "N\0"
    ///  52  0002 0005 00000003 00000050             GPSLatitude, RATIONAL, 3, -> 80
    ///  64  001B 0007 0000000B 00000068             GPSProcessingMethod, UNDEFINED, 11, -> 104
    ///  76  00000000                                no next IFD
    ///  80  00000030 00000001 00000033 00000001 0000001E 00000001    48/1 51/1 30/1 (degrees, minutes, seconds)
    /// 104  41 53 43 49 49 00 00 00 47 50 53        "ASCII\0\0\0GPS"
    /// 115  end
    /// ```
    /// The segment: FF E1, length (2 + 6 + 115 = 123, counting itself), "Exif\0\0", then the TIFF bytes.
    fn exif_app1() -> Vec<u8> {
        let tiff: Vec<u8> = [
            &[0x4D, 0x4D, 0x00, 0x2A, 0, 0, 0, 8][..],
            &[0x00, 0x02],
            &[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0x00, 0x06, 0x00, 0x00],
            &[0x88, 0x25, 0x00, 0x04, 0, 0, 0, 1, 0, 0, 0, 38],
            &[0, 0, 0, 0],
            &[0x00, 0x03],
            &[0x00, 0x01, 0x00, 0x02, 0, 0, 0, 2, b'N', 0, 0, 0],
            &[0x00, 0x02, 0x00, 0x05, 0, 0, 0, 3, 0, 0, 0, 80],
            &[0x00, 0x1B, 0x00, 0x07, 0, 0, 0, 11, 0, 0, 0, 104],
            &[0, 0, 0, 0],
            &[0, 0, 0, 48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 30, 0, 0, 0, 1],
            b"ASCII\0\0\0GPS",
        ]
        .concat();
        assert_eq!(tiff.len(), 115);
        let len = (2 + 6 + tiff.len()) as u16;
        [&[0xFF, 0xE1][..], &len.to_be_bytes(), b"Exif\0\0", &tiff].concat()
    }

    /// A landscape 40×20 photo stored sideways, with a red block in its stored top-left corner.
    fn sideways_photo_with_gps() -> Vec<u8> {
        let img = ImageBuffer::from_fn(40, 20, |x, y| if x < 8 && y < 8 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let plain = jpeg_of(&img);
        // SOI, then the APP1 segment, then everything else (JFIF APP0, tables, scan).
        [&plain[..2], &exif_app1(), &plain[2..]].concat()
    }

    fn is_red(p: Rgb<u8>) -> bool {
        p.0[0] > 180 && p.0[1] < 80 && p.0[2] < 80
    }

    #[test]
    fn exif_orientation_is_applied_and_all_metadata_dropped() {
        let input = sideways_photo_with_gps();
        assert!(contains(&input, b"Exif") && contains(&input, b"GPS"), "the fixture carries EXIF and GPS");
        let mut probe = ImageReader::with_format(Cursor::new(&input), ImageFormat::Jpeg).into_decoder().unwrap();
        assert_eq!(probe.orientation().unwrap(), image::metadata::Orientation::Rotate90, "fixture is readable");

        let out = prepare(&input, &PrepareLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (20, 40), "orientation 6 swaps the sides");
        let decoded = image::load_from_memory_with_format(&out.jpeg, ImageFormat::Jpeg).unwrap().into_rgb8();
        assert_eq!(decoded.dimensions(), (20, 40));
        // Rotating 90° clockwise moves the stored top-left corner to the top-right.
        assert!(is_red(*decoded.get_pixel(17, 2)), "{:?}", decoded.get_pixel(17, 2));
        assert!(!is_red(*decoded.get_pixel(2, 2)));
        assert!(!is_red(*decoded.get_pixel(17, 37)));

        let markers = header_markers(&out.jpeg);
        assert!(!markers.contains(&0xE1), "no APP1 segment: {markers:x?}");
        assert!(!contains(&out.jpeg, b"Exif"));
        assert!(!contains(&out.jpeg, b"GPS"));
    }

    #[test]
    fn a_png_is_accepted_and_becomes_a_jpeg() {
        let img = ImageBuffer::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 128]));
        let out = prepare(&png_of(&img), &PrepareLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (64, 48));
        assert_eq!(sniff(&out.jpeg), Some("image/jpeg"));
    }

    #[test]
    fn transparent_pixels_become_white() {
        let img = ImageBuffer::from_pixel(10, 10, image::Rgba([0u8, 0, 0, 0]));
        let mut png = Vec::new();
        PngEncoder::new(&mut png).write_image(img.as_raw(), 10, 10, image::ExtendedColorType::Rgba8).unwrap();
        let out = prepare(&png, &PrepareLimits::default()).unwrap();
        let decoded = image::load_from_memory(&out.jpeg).unwrap().into_rgb8();
        assert!(decoded.get_pixel(5, 5).0.iter().all(|&c| c > 240), "{:?}", decoded.get_pixel(5, 5));
    }

    #[test]
    fn a_webp_is_accepted() {
        let img = ImageBuffer::from_pixel(30, 20, image::Rgba([10u8, 200, 30, 255]));
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .write_image(img.as_raw(), 30, 20, image::ExtendedColorType::Rgba8)
            .unwrap();
        assert_eq!(sniff(&webp), Some("image/webp"));
        let out = prepare(&webp, &PrepareLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (30, 20));
    }

    /// CRC-32 (ISO-HDLC) of a PNG chunk's type and data.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let body = [&kind[..], data].concat();
        [&(data.len() as u32).to_be_bytes()[..], &body, &crc32(&body).to_be_bytes()].concat()
    }

    /// A PNG header claiming 10 000 × 5 000 RGBA pixels (200 MB decoded) in under a hundred bytes: the
    /// signature, the IHDR, an IDAT holding only the start of a zlib stream, and IEND.
    fn png_bomb_header() -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&10_000u32.to_be_bytes());
        ihdr.extend_from_slice(&5_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8 bits, RGBA, deflate, adaptive filter, no interlace
        [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &[0x78, 0x9C]), &chunk(b"IEND", &[])]
            .concat()
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let bomb = png_bomb_header();
        assert!(bomb.len() < 100);
        assert_eq!(
            prepare(&bomb, &PrepareLimits::default()),
            Err(ImageError::TooManyPixels { width: 10_000, height: 5_000 })
        );
    }

    #[test]
    fn random_bytes_are_not_an_image() {
        let noise: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(prepare(&noise, &PrepareLimits::default()), Err(ImageError::NotAnImage));
        assert_eq!(prepare(b"", &PrepareLimits::default()), Err(ImageError::NotAnImage));
        assert_eq!(ImageError::NotAnImage.user_reason(), "The uploaded file is not a photo (JPEG or PNG).");
    }

    #[test]
    fn other_formats_are_unsupported() {
        let heic = [&[0, 0, 0, 24][..], b"ftypheic", &[0; 12]].concat();
        assert_eq!(sniff(&heic), Some("image/heic"));
        assert_eq!(prepare(&heic, &PrepareLimits::default()), Err(ImageError::UnsupportedFormat("HEIC".into())));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert!(matches!(prepare(gif, &PrepareLimits::default()), Err(ImageError::UnsupportedFormat(_))));
    }

    #[test]
    fn a_truncated_jpeg_is_corrupt() {
        let img = ImageBuffer::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8]));
        let jpeg = jpeg_of(&img);
        for cut in [jpeg.len() / 2, jpeg.len() - 2, 40] {
            let result = prepare(&jpeg[..cut], &PrepareLimits::default());
            assert!(matches!(result, Err(ImageError::Corrupt(_))), "cut at {cut}: {result:?}");
        }
        // Bytes after the end-of-image marker (a motion photo's video) are fine.
        let motion = [&jpeg[..], b"ftypmp42 and a video"].concat();
        assert!(prepare(&motion, &PrepareLimits::default()).is_ok());
    }

    #[test]
    fn an_oversized_upload_is_refused_unread() {
        let limits = PrepareLimits { max_input_bytes: 10, ..PrepareLimits::default() };
        assert_eq!(prepare(&[0xFF; 11], &limits), Err(ImageError::TooLarge { bytes: 11 }));
    }

    #[test]
    fn downsizing_caps_the_long_side_and_keeps_the_aspect_ratio() {
        let img = ImageBuffer::from_pixel(3000, 2000, Rgb([90u8, 120, 150]));
        let out = prepare(&png_of(&img), &PrepareLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (1536, 1024));
        let tall = ImageBuffer::from_pixel(500, 1999, Rgb([90u8, 120, 150]));
        let limits = PrepareLimits { max_side: 400, ..PrepareLimits::default() };
        let out = prepare(&png_of(&tall), &limits).unwrap();
        assert_eq!((out.width, out.height), (100, 400));
    }

    #[test]
    fn a_small_photo_is_not_upscaled() {
        let img = ImageBuffer::from_pixel(120, 90, Rgb([1u8, 2, 3]));
        let out = prepare(&jpeg_of(&img), &PrepareLimits::default()).unwrap();
        assert_eq!((out.width, out.height), (120, 90));
    }

    #[test]
    fn user_reasons_are_short_sentences_without_internals() {
        let errors = [
            ImageError::NotAnImage,
            ImageError::UnsupportedFormat("TIFF".into()),
            ImageError::TooManyPixels { width: 10_000, height: 5_000 },
            ImageError::TooLarge { bytes: 12_345_678 },
            ImageError::Corrupt("zune-jpeg: premature end of buffer".into()),
        ];
        for e in errors {
            let reason = e.user_reason();
            assert!(reason.ends_with('.') && reason.len() < 100, "{reason}");
            for internal in ["TIFF", "10000", "12345678", "zune", "buffer"] {
                assert!(!reason.contains(internal), "{reason}");
            }
        }
    }
}
