//! Measures the JPEG codecs on the benchmark frames: zune-jpeg and jpeg-encoder (mjpegd's pure-Rust
//! default) against libjpeg-turbo through the `turbojpeg` crate.
//!
//! `cargo run --release -p mjpegd --features turbojpeg --example codec_cost -- ../shared/frames/720p`
//!
//! Decode: JPEG → RGB. Encode: RGB → JPEG at quality 80, 4:2:0. Mean milliseconds per frame over
//! the first 30 frames, best of 3 passes (the least disturbed by other work on the machine).

use std::time::Instant;

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

const QUALITY: u8 = 80;
const PASSES: usize = 3;

fn main() -> Result<(), String> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/frames/720p".into());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    entries.sort();
    let jpegs: Vec<Vec<u8>> = entries
        .iter()
        .take(30)
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<_, _>>()?;
    if jpegs.is_empty() {
        return Err(format!("no .jpg frames in {dir}"));
    }

    let zune_decode = |j: &[u8]| -> Result<(Vec<u8>, usize, usize), String> {
        let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut d = JpegDecoder::new_with_options(j, options);
        let px = d.decode().map_err(|e| format!("zune-jpeg: {e:?}"))?;
        let (w, h) = d.dimensions().ok_or("zune-jpeg: no dimensions")?;
        Ok((px, w, h))
    };
    let mut tj_decoder = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
    let mut tj_decode = |j: &[u8]| -> Result<(Vec<u8>, usize, usize), String> {
        let header = tj_decoder.read_header(j).map_err(|e| e.to_string())?;
        let (w, h) = (header.width, header.height);
        let mut image = turbojpeg::Image {
            pixels: vec![0u8; w * h * 3],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        tj_decoder
            .decompress(j, image.as_deref_mut())
            .map_err(|e| e.to_string())?;
        Ok((image.pixels, w, h))
    };

    let rgb: Vec<(Vec<u8>, usize, usize)> = jpegs
        .iter()
        .map(|j| zune_decode(j))
        .collect::<Result<_, _>>()?;
    let (w0, h0) = (rgb[0].1, rgb[0].2);

    let zune_ms = time(&jpegs, |j| zune_decode(j).map(|_| ()))?;
    let tj_dec_ms = time(&jpegs, |j| tj_decode(j).map(|_| ()))?;

    let encode_rust = |(px, w, h): &(Vec<u8>, usize, usize)| -> Result<usize, String> {
        let mut out = Vec::with_capacity(px.len() / 8);
        let mut e = Encoder::new(&mut out, QUALITY);
        e.set_sampling_factor(SamplingFactor::F_2_2);
        e.encode(px, *w as u16, *h as u16, ColorType::Rgb)
            .map_err(|e| e.to_string())?;
        Ok(out.len())
    };
    let mut tj_encoder = turbojpeg::Compressor::new().map_err(|e| e.to_string())?;
    tj_encoder
        .set_quality(i32::from(QUALITY))
        .map_err(|e| e.to_string())?;
    tj_encoder
        .set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .map_err(|e| e.to_string())?;
    let mut encode_tj = |(px, w, h): &(Vec<u8>, usize, usize)| -> Result<usize, String> {
        let image = turbojpeg::Image {
            pixels: &px[..],
            width: *w,
            pitch: *w * 3,
            height: *h,
            format: turbojpeg::PixelFormat::RGB,
        };
        tj_encoder
            .compress_to_vec(image)
            .map(|v| v.len())
            .map_err(|e| e.to_string())
    };
    let rust_size = encode_rust(&rgb[0])?;
    let tj_size = encode_tj(&rgb[0])?;
    let rust_enc_ms = time(&rgb, |i| encode_rust(i).map(|_| ()))?;
    let tj_enc_ms = time(&rgb, |i| encode_tj(i).map(|_| ()))?;

    println!(
        "{} frames of {w0}x{h0} from {dir}, best of {PASSES} passes, quality {QUALITY}, 4:2:0\n",
        jpegs.len()
    );
    println!("| codec | decode ms/frame | encode ms/frame | first frame encoded (bytes) |");
    println!("|---|---:|---:|---:|");
    println!("| zune-jpeg / jpeg-encoder (simd) | {zune_ms:.2} | {rust_enc_ms:.2} | {rust_size} |");
    println!("| libjpeg-turbo (turbojpeg) | {tj_dec_ms:.2} | {tj_enc_ms:.2} | {tj_size} |");
    println!(
        "| ratio (pure Rust / libjpeg-turbo) | {:.2} | {:.2} | |",
        zune_ms / tj_dec_ms,
        rust_enc_ms / tj_enc_ms
    );
    Ok(())
}

/// Mean milliseconds per item of the fastest of [`PASSES`] passes over `items`.
fn time<T>(items: &[T], mut f: impl FnMut(&T) -> Result<(), String>) -> Result<f64, String> {
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let start = Instant::now();
        for i in items {
            f(i)?;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1000.0 / items.len() as f64);
    }
    Ok(best)
}
