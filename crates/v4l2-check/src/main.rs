//! Captures from a real V4L2 driver through mjpegd's own `v4l2` source and checks the frames.
//!
//! Run by `scripts/test-v4l2-vivid.sh` inside a qemu VM with the `vivid` virtual camera driver
//! (no camera needed), or by hand against a real camera:
//!
//! ```sh
//! cargo run --release -p v4l2-check -- /dev/video0
//! ```
//!
//! It lists the devices, captures frames in the best format and in every raw format the device
//! offers (comparing their colours), checks that a second opening gets the "device busy" error
//! and a missing device the "cannot open" one, checks camera controls through a real server
//! (`controls.rs`, reading values back with `v4l2-ctl`), with `--mplane NODE` does the captures
//! again on a multi-planar node (vivid's `multiplanar=2`) against the first node's colours
//! (with `--all-formats`, every format listed must be there, as vivid offers them all), and
//! ends with one line:
//! `V4L2_CAPTURE_RESULT: PASS ...` or `V4L2_CAPTURE_RESULT: FAIL ...` (exit status 0 or 1).

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("v4l2-check: V4L2 exists only on Linux");
}

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(target_os = "linux")]
mod controls;

#[cfg(target_os = "linux")]
mod linux {
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use mjpegd::frame::Image;
    use mjpegd::source::v4l2::{V4l2Opener, list_devices};
    use mjpegd::source::{Opener, Params, Source};

    /// Frames captured in the automatically chosen format.
    const FRAMES: usize = 10;
    /// Frames captured in each raw format.
    const FRAMES_PER_FORMAT: usize = 3;
    /// Longest wait for the host's browser test to finish with the page.
    const PAGE_WAIT: Duration = Duration::from_secs(300);
    /// Longest wait for one frame (an emulated machine is slow).
    const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
    /// Raw formats in one buffer to compare, with the reference first: each the encoder
    /// reads as it is, then each the copy out of the driver's buffer rearranges.
    const FORMATS: [&str; 32] = [
        "RGB3", "YUYV", "UYVY", "NV12", "BGR3", "GREY", "YVYU", "VYUY", "NV21", "YU12", "YV12",
        "NV16", "NV61", "422P", "NV24", "NV42", "XR24", "AR24", "BGR4", "XB24", "AB24", "BX24",
        "BA24", "RGB4", "RX24", "RA24", "RGBP", "RGBR", "Y10", "Y12", "Y16", "Y16_BE",
    ];
    /// Luma-only formats, compared by brightness.
    const GREY_FORMATS: [&str; 5] = ["GREY", "Y10", "Y12", "Y16", "Y16_BE"];
    /// Formats in two or three buffers, which exist only on the multi-planar API.
    const MPLANE_FORMATS: [&str; 10] = [
        "NM12", "NM21", "NM16", "NM61", "YM12", "YM21", "YM16", "YM61", "YM24", "YM42",
    ];
    /// Largest difference per channel from the reference format's colours.
    const TOLERANCE: u8 = 24;

    pub(crate) fn main() -> ExitCode {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .init();
        let args: Vec<String> = std::env::args().skip(1).collect();
        let device = args
            .first()
            .cloned()
            .unwrap_or_else(|| "/dev/video0".into());
        let option = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        // `--serve-page ADDR`: afterwards, serve the camera page for the host's browser test,
        // until the host sends `done` to `--page-done ADDR`.
        let page = option("--serve-page");
        let page_done = option("--page-done").unwrap_or_else(|| "0.0.0.0:8081".into());
        // `--mplane NODE`: a multi-planar node showing the same picture as DEVICE.
        let mplane = option("--mplane");
        // `--all-formats`: every format listed here must be offered (vivid offers them all);
        // without it, a camera's missing formats are skipped.
        let all_formats = args.iter().any(|a| a == "--all-formats");
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                println!("V4L2_CAPTURE_RESULT: FAIL cannot start a runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let started = Instant::now();
        match rt.block_on(async {
            let (mut summary, reference) = run(&device, all_formats).await?;
            if let Some(node) = &mplane {
                summary = format!("{summary}; {}", run_mplane(node, &reference).await?);
            }
            match &page {
                Some(listen) => {
                    let page =
                        crate::controls::serve_page(&device, listen, &page_done, PAGE_WAIT).await?;
                    Ok::<_, String>(format!("{summary}; {page}"))
                }
                None => Ok(summary),
            }
        }) {
            Ok(summary) => {
                println!(
                    "V4L2_CAPTURE_RESULT: PASS {summary} ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("V4L2_CAPTURE_RESULT: FAIL {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn params(width: u32, height: u32) -> Params {
        Params {
            width,
            height,
            fps: 30.0,
            quality: 85,
        }
    }

    async fn next(source: &mut Box<dyn Source>) -> Result<Image, String> {
        match tokio::time::timeout(FRAME_TIMEOUT, source.next_frame()).await {
            Ok(Ok(image)) => Ok(image),
            Ok(Err(e)) => Err(format!("capture failed: {e}")),
            Err(_) => Err(format!("no frame within {FRAME_TIMEOUT:?}")),
        }
    }

    /// Checks one frame: a complete JPEG of the announced size that decodes; returns the
    /// decoded pixels and the number of channels.
    fn check(image: &Image, want: (u32, u32)) -> Result<(Vec<u8>, usize), String> {
        let dims = mjpegd::jpeg::dimensions(&image.jpeg).map_err(|e| format!("bad JPEG: {e}"))?;
        if dims != (image.width, image.height) || dims != want {
            return Err(format!(
                "JPEG is {dims:?}, image says {}x{}, wanted {want:?}",
                image.width, image.height
            ));
        }
        if !mjpegd::jpeg::looks_complete(&image.jpeg) {
            return Err("JPEG does not end with EOI".into());
        }
        let mut decoder = zune_jpeg::JpegDecoder::new(&image.jpeg[..]);
        let pixels = decoder
            .decode()
            .map_err(|e| format!("JPEG does not decode: {e:?}"))?;
        let channels = pixels.len() / (dims.0 as usize * dims.1 as usize);
        if channels == 0 {
            return Err("decoded to nothing".into());
        }
        Ok((pixels, channels))
    }

    /// The colour at the middle of each of eight vertical bars (vivid's colour bars), as RGB
    /// (grey repeated for one-channel images).
    fn bars(pixels: &[u8], channels: usize, (w, h): (u32, u32)) -> Vec<[u8; 3]> {
        let (w, h) = (w as usize, h as usize);
        (0..8)
            .map(|i| {
                let x = (2 * i + 1) * w / 16;
                let at = (h / 2 * w + x) * channels;
                if channels >= 3 {
                    [pixels[at], pixels[at + 1], pixels[at + 2]]
                } else {
                    [pixels[at]; 3]
                }
            })
            .collect()
    }

    /// The luma of a colour by BT.601 and by BT.709 weights (drivers use either for grey).
    fn lumas([r, g, b]: [u8; 3]) -> [u8; 2] {
        let [r, g, b] = [r, g, b].map(f64::from);
        [
            (0.299 * r + 0.587 * g + 0.114 * b).round() as u8,
            (0.2126 * r + 0.7152 * g + 0.0722 * b).round() as u8,
        ]
    }

    /// Captures `FRAMES_PER_FORMAT` frames of `format` from `device` at `want`; the bar colours
    /// of the last, or `None` when the device does not offer the format.
    async fn bar_colours(
        device: &str,
        format: &str,
        want: (u32, u32),
    ) -> Result<Option<Vec<[u8; 3]>>, String> {
        let opener = V4l2Opener::new(device, Some(format), params(want.0, want.1))
            .map_err(|e| e.to_string())?;
        let mut source = match opener.open().await {
            Ok(s) => s,
            Err(e) if e.to_string().contains("does not offer") => {
                println!("{format}: not offered, skipped");
                return Ok(None);
            }
            Err(e) => return Err(format!("{format}: open: {e}")),
        };
        let mut colours = Vec::new();
        for i in 0..FRAMES_PER_FORMAT {
            let image = next(&mut source)
                .await
                .map_err(|e| format!("{format}: {e}"))?;
            let (pixels, channels) =
                check(&image, want).map_err(|e| format!("{format} frame {i}: {e}"))?;
            colours = bars(&pixels, channels, want);
        }
        println!("{format}: bar colours {colours:?}");
        Ok(Some(colours))
    }

    /// Fails when a bar of `colours` (captured in `format`) is further than `TOLERANCE` from
    /// the reference's (its luma, for grey).
    fn compare(format: &str, colours: &[[u8; 3]], reference: &[[u8; 3]]) -> Result<(), String> {
        for (bar, (got, want)) in colours.iter().zip(reference).enumerate() {
            let ok = if GREY_FORMATS.contains(&format) {
                lumas(*want)
                    .iter()
                    .any(|l| got[0].abs_diff(*l) <= TOLERANCE)
            } else {
                got.iter()
                    .zip(want)
                    .all(|(g, w)| g.abs_diff(*w) <= TOLERANCE)
            };
            if !ok {
                return Err(format!(
                    "{format}: bar {bar} is {got:?}, RGB3 showed {want:?}"
                ));
            }
        }
        Ok(())
    }

    /// Captures `FRAMES` frames from `source` (opened on `device`), each a complete JPEG of
    /// `want` that decodes, not all the same; returns the rate they came at.
    async fn capture_live(
        source: &mut Box<dyn Source>,
        device: &str,
        want: (u32, u32),
    ) -> Result<f64, String> {
        let t = Instant::now();
        let mut distinct = 0;
        let mut last: Option<Image> = None;
        for i in 0..FRAMES {
            let image = next(source).await?;
            check(&image, want).map_err(|e| format!("{device} frame {i}: {e}"))?;
            if last.as_ref().is_none_or(|l| l.jpeg != image.jpeg) {
                distinct += 1;
            }
            println!(
                "frame {i}: {} bytes, {}x{}",
                image.jpeg.len(),
                image.width,
                image.height
            );
            last = Some(image);
        }
        let fps = FRAMES as f64 / t.elapsed().as_secs_f64();
        println!("{device}: {FRAMES} frames at {fps:.1} fps, {distinct} distinct");
        if distinct < 2 {
            return Err(format!(
                "{device}: every frame was identical: is the camera live?"
            ));
        }
        Ok(fps)
    }

    /// Captures from a multi-planar node: it must be listed as such, stream live frames in
    /// the best format, and show the `reference` colours in every raw format it offers.
    async fn run_mplane(node: &str, reference: &[[u8; 3]]) -> Result<String, String> {
        let listing = list_devices();
        let entry = listing
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{node}:")))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        if !entry.contains("multi-planar video capture") {
            return Err(format!(
                "the device list does not show {node} as multi-planar video capture:\n{entry}"
            ));
        }
        let want = (640, 480);
        let opener =
            V4l2Opener::new(node, None, params(want.0, want.1)).map_err(|e| e.to_string())?;
        println!("opening {}", opener.describe());
        let mut source = opener
            .open()
            .await
            .map_err(|e| format!("open {node}: {e}"))?;
        let fps = capture_live(&mut source, node, want).await?;
        drop(source);
        let mut tested = Vec::new();
        let formats: Vec<&str> = FORMATS.iter().chain(&MPLANE_FORMATS).copied().collect();
        for &format in &formats {
            if let Some(colours) = bar_colours(node, format, want).await? {
                compare(format, &colours, reference).map_err(|e| format!("{node}: {e}"))?;
                tested.push(format);
            }
        }
        // vivid offers every one of them on the multi-planar API, those in several buffers
        // included; fewer means formats went missing on the way.
        if tested.len() < formats.len() {
            return Err(format!(
                "{node}: only {tested:?} of {formats:?} could be captured"
            ));
        }
        Ok(format!(
            "multi-planar {node}: {FRAMES} frames at {fps:.1} fps, formats {}",
            tested.join(" ")
        ))
    }

    async fn run(device: &str, all_formats: bool) -> Result<(String, Vec<[u8; 3]>), String> {
        let listing = list_devices();
        println!("--- mjpegd --list-devices ---\n{listing}--- end of list ---");
        if !listing.contains(device) || !listing.contains("video capture") {
            return Err(format!(
                "the device list does not show {device} as video capture"
            ));
        }
        if !listing.contains("brightness 0x00980900 (int): min=0 max=255 step=1 default=128") {
            return Err("the device list does not show the brightness control".into());
        }

        // The best format the device offers, at 640x480.
        let want = (640, 480);
        let opener =
            V4l2Opener::new(device, None, params(want.0, want.1)).map_err(|e| e.to_string())?;
        println!("opening {}", opener.describe());
        let t = Instant::now();
        let mut source = opener
            .open()
            .await
            .map_err(|e| format!("open {device}: {e}"))?;
        println!("opened in {:.2} s", t.elapsed().as_secs_f64());
        let fps = capture_live(&mut source, device, want).await?;

        // A second opening while the first streams must be refused clearly.
        match V4l2Opener::new(device, None, params(want.0, want.1))
            .map_err(|e| e.to_string())?
            .open()
            .await
        {
            Ok(_) => return Err("a second opening of a streaming device succeeded".into()),
            Err(e) if e.to_string().contains("device busy: another program") => {
                println!("busy as expected: {e}");
            }
            Err(e) => return Err(format!("a second opening failed without saying busy: {e}")),
        }
        drop(source);

        // Every raw format the device offers, compared with the reference (RGB) colours.
        let mut reference: Option<Vec<[u8; 3]>> = None;
        let mut tested = Vec::new();
        for format in FORMATS {
            let Some(colours) = bar_colours(device, format, want).await? else {
                continue;
            };
            match &reference {
                None => reference = Some(colours),
                Some(r) => compare(format, &colours, r)?,
            }
            tested.push(format);
        }
        let Some(reference) = reference else {
            return Err("the device offers no RGB3 to compare colours with".into());
        };
        if all_formats && tested.len() < FORMATS.len() {
            return Err(format!(
                "{device}: only {tested:?} of {FORMATS:?} could be captured"
            ));
        }

        // A missing device names the fix.
        let missing = "/dev/video99";
        match V4l2Opener::new(missing, None, params(want.0, want.1))
            .map_err(|e| e.to_string())?
            .open()
            .await
        {
            Ok(_) => return Err(format!("{missing} opened")),
            Err(e) => {
                let expected = format!(
                    "v4l2: cannot open {missing}: No such file or directory — list devices with \
                     mjpegd --list-devices"
                );
                if e.to_string() != expected {
                    return Err(format!("missing device: got {e:?}, expected {expected:?}"));
                }
                println!("missing device as expected: {e}");
            }
        }

        // Nodes that are not capture devices (vivid also creates output nodes) say so.
        for n in 0..8 {
            let node = format!("/dev/video{n}");
            if node == device || !std::path::Path::new(&node).exists() {
                continue;
            }
            if let Err(e) = V4l2Opener::new(&node, None, params(want.0, want.1))
                .map_err(|e| e.to_string())?
                .open()
                .await
            {
                println!("{node}: {e}");
            }
        }

        let controls = crate::controls::check(device).await?;

        let summary = format!(
            "{FRAMES} frames at {fps:.1} fps; formats {}; busy and missing-device errors; {controls}",
            tested.join(" ")
        );
        Ok((summary, reference))
    }
}
