//! The classic emulated camera: still JPEG images played in a loop at a fixed rate.
//!
//! `images:DIR` plays the `.jpg`/`.jpeg` files of a directory in name order; `images` alone
//! plays three built-in frames showing "1", "2", "3", like the classic Flask demo. Files are
//! loaded (and checked) when capture starts, so a folder can be changed while the camera idles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::{Interval, MissedTickBehavior};

use super::{BoxFuture, Opener, Params, Source, SourceError, blocking, interval_of};
use crate::frame::Image;
use crate::jpeg;
use crate::render::{Canvas, fit_scale};

/// Most files one directory may contribute; a guard against pointing at a huge folder.
pub const MAX_FILES: usize = 10_000;

/// Most bytes of images held in memory for one camera.
pub const MAX_TOTAL_BYTES: u64 = 512 * 1024 * 1024;

/// Opens an image loop.
#[derive(Debug)]
pub struct ImagesOpener {
    what: What,
    params: Params,
}

#[derive(Debug)]
enum What {
    Builtin,
    Dir(PathBuf),
}

impl ImagesOpener {
    /// The three built-in frames "1", "2", "3".
    pub fn builtin(params: Params) -> ImagesOpener {
        ImagesOpener {
            what: What::Builtin,
            params,
        }
    }

    /// The JPEG files of `dir`; fails at once when the directory has none.
    pub fn dir(dir: PathBuf, params: Params) -> Result<ImagesOpener, SourceError> {
        list_jpegs(&dir)?;
        Ok(ImagesOpener {
            what: What::Dir(dir),
            params,
        })
    }
}

impl Opener for ImagesOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let params = self.params;
            let frames = match &self.what {
                What::Builtin => {
                    blocking("images: render", move || builtin_frames(params)).await??
                }
                What::Dir(dir) => {
                    let dir = dir.clone();
                    blocking("images: load", move || load_dir(&dir)).await??
                }
            };
            let mut ticks = tokio::time::interval(interval_of(params.fps));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let source: Box<dyn Source> = Box::new(Images {
                frames: frames.into(),
                next: 0,
                ticks,
            });
            Ok(source)
        })
    }

    fn describe(&self) -> String {
        match &self.what {
            What::Builtin => format!("images (built-in 1,2,3) @{}fps", self.params.fps),
            What::Dir(d) => format!("images:{} @{}fps", d.display(), self.params.fps),
        }
    }
}

struct Images {
    frames: Arc<[Image]>,
    next: usize,
    ticks: Interval,
}

impl Source for Images {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            self.ticks.tick().await;
            let i = self.next % self.frames.len().max(1);
            self.next = i + 1;
            self.frames
                .get(i)
                .cloned()
                .ok_or_else(|| SourceError::new("images: no frames"))
        })
    }
}

/// The `.jpg`/`.jpeg` files of `dir`, sorted by name.
fn list_jpegs(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SourceError::permanent(format!(
            "images: cannot read directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("jpeg")
                })
        })
        .collect();
    if files.is_empty() {
        return Err(SourceError::permanent(format!(
            "images: no .jpg or .jpeg files in {} — put JPEG images there, or use --source testpattern",
            dir.display()
        )));
    }
    if files.len() > MAX_FILES {
        return Err(SourceError::permanent(format!(
            "images: {} has {} JPEG files, more than the limit of {MAX_FILES}",
            dir.display(),
            files.len()
        )));
    }
    files.sort();
    Ok(files)
}

fn load_dir(dir: &Path) -> Result<Vec<Image>, SourceError> {
    let mut frames = Vec::new();
    let mut total: u64 = 0;
    for path in list_jpegs(dir)? {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "images: skipping unreadable file");
                continue;
            }
        };
        total += data.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(SourceError::permanent(format!(
                "images: the files of {} exceed {} MiB",
                dir.display(),
                MAX_TOTAL_BYTES >> 20
            )));
        }
        match jpeg::dimensions(&data) {
            Ok((width, height)) => frames.push(Image {
                jpeg: Bytes::from(data),
                width,
                height,
            }),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "images: skipping invalid JPEG")
            }
        }
    }
    if frames.is_empty() {
        return Err(SourceError::permanent(format!(
            "images: none of the JPEG files in {} could be read as a JPEG",
            dir.display()
        )));
    }
    Ok(frames)
}

fn builtin_frames(p: Params) -> Result<Vec<Image>, SourceError> {
    ["1", "2", "3"]
        .iter()
        .zip([[200, 40, 40], [40, 160, 40], [40, 80, 200]])
        .map(|(digit, color)| {
            let mut c = Canvas::new(p.width, p.height, color);
            let scale = fit_scale(digit, c.width() / 3, 64)
                .min(c.height() / 16)
                .max(1);
            let y = (i64::from(c.height()) - i64::from(scale * 8)) / 2;
            c.text_centered(y, scale, [255, 255, 255], digit);
            let jpeg = c
                .encode(p.quality)
                .map_err(|e| SourceError::new(format!("images: encode: {e}")))?;
            Ok(Image {
                jpeg,
                width: c.width(),
                height: c.height(),
            })
        })
        .collect()
}
