//! `/mosaic`: cameras composed into one MJPEG stream, one composition shared by its viewers,
//! offline cameras in their no-signal tile, inputs captured only while the mosaic is watched.
//! Every composed frame is decoded with a real decoder and its tiles' pixels checked.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mjpegd::frame::Image;
use mjpegd::http::HttpConfig;
use mjpegd::mosaic::{Layout, MAX_MOSAICS};
use mjpegd::render::Canvas;
use mjpegd::server::ServerConfig;
use mjpegd::source::{BoxFuture, Opener, Source, SourceError};

/// A camera that shows one colour.
struct Solid([u8; 3]);

struct SolidSource {
    colour: [u8; 3],
    ticks: tokio::time::Interval,
}

impl Opener for Solid {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        let colour = self.0;
        Box::pin(async move {
            let s: Box<dyn Source> = Box::new(SolidSource {
                colour,
                ticks: tokio::time::interval(Duration::from_millis(33)),
            });
            Ok(s)
        })
    }
    fn describe(&self) -> String {
        "solid colour".into()
    }
}

impl Source for SolidSource {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            self.ticks.tick().await;
            let jpeg = Canvas::new(320, 180, self.colour)
                .encode(90)
                .map_err(|e| SourceError::new(e.to_string()))?;
            Ok(Image {
                jpeg,
                width: 320,
                height: 180,
            })
        })
    }
}

const RED: [u8; 3] = [220, 30, 30];
const BLUE: [u8; 3] = [30, 30, 220];

async fn server() -> TestServer {
    let quick = |mut c: mjpegd::hub::CameraConfig| {
        c.idle_timeout = Duration::from_millis(300);
        c.width = 320;
        c.height = 180;
        c
    };
    let down = Scripted::new(Script {
        failing_opens: (1..=1000).collect(),
        ..Script::default()
    });
    TestServer::start(
        vec![
            quick(camera("red", Arc::new(Solid(RED)))),
            quick(camera("blue", Arc::new(Solid(BLUE)))),
            quick(camera("down", down)),
        ],
        HttpConfig::default(),
        ServerConfig::default(),
    )
    .await
}

/// The mean colour of the `w`x`h` box at (`x`, `y`) of decoded RGB `rgb` `width` wide.
fn mean(rgb: &[u8], width: usize, (x, y, w, h): (usize, usize, usize, usize)) -> [u8; 3] {
    let mut sum = [0u64; 3];
    for yy in y..y + h {
        for xx in x..x + w {
            let i = (yy * width + xx) * 3;
            for c in 0..3 {
                sum[c] += u64::from(rgb[i + c]);
            }
        }
    }
    let n = (w * h) as u64;
    sum.map(|s| (s / n) as u8)
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) < 30)
}

fn decode(jpeg: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut d = zune_jpeg::JpegDecoder::new(jpeg);
    let rgb = d.decode().expect("a decodable mosaic");
    let (w, h) = d.dimensions().expect("dimensions");
    (w, h, rgb)
}

#[tokio::test]
async fn a_mosaic_composes_its_cameras_into_one_shared_stream() {
    let server = server().await;
    let url = server.url("/mosaic?cameras=red,blue,down&width=640");
    let layout = Layout::new(3, 640);
    assert_eq!(
        (layout.width, layout.height, layout.tile),
        (640, 360, (320, 180))
    );
    let mut a = MjpegClient::connect(&url).await;
    let mut b = MjpegClient::connect(&url).await;

    // Tiles in order, left to right then down: red, blue, then the offline camera's
    // no-signal frame (dark, with red text), and the empty fourth place.
    let (tw, th) = (layout.tile.0 as usize, layout.tile.1 as usize);
    let centre = |i: usize| {
        let (x, y) = layout.origin(i);
        (x as usize + tw / 4, y as usize + th / 4, tw / 2, th / 2)
    };
    let mut composed = None;
    for _ in 0..100 {
        let part = a.part().await;
        let (w, h, rgb) = decode(&part.jpeg);
        assert_eq!((w, h), (640, 360));
        let tiles: Vec<[u8; 3]> = (0..4).map(|i| mean(&rgb, w, centre(i))).collect();
        let down = tiles[2];
        // "connecting" until the inputs' first frames, the no-signal frame once `down` failed.
        // (The loop waits past a first "connecting" tile, which a loaded run may compose.)
        let no_signal = down.iter().all(|&c| c < 110) && down[0] > down[2];
        if near(tiles[0], RED) && near(tiles[1], BLUE) && down != tiles[3] && no_signal {
            composed = Some(tiles);
            break;
        }
    }
    let tiles = composed.expect("a mosaic with every camera's picture in its tile");
    assert!(
        tiles[2].iter().all(|&c| c < 110) && tiles[2][0] > tiles[2][2],
        "the offline camera's tile shows its no-signal frame (dark, red text): {:?}",
        tiles[2]
    );
    assert!(
        near(tiles[3], [16, 16, 20]),
        "the empty place: {:?}",
        tiles[3]
    );

    // One composition for both viewers: one mosaic, two viewers of it, frames in order.
    let mosaics = server.state.mosaics().list();
    assert_eq!(mosaics.len(), 1);
    assert_eq!(mosaics[0].camera.viewer_list().len(), 2);
    // `/api/state` lists it with its inputs, size, rate and viewers, and a URL that names this
    // mosaic: a picture from it makes no second one.
    let state: serde_json::Value = reqwest::get(server.url("/api/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let listed = &state["mosaics"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(
        listed[0]["cameras"],
        serde_json::json!(["red", "blue", "down"])
    );
    let size = (&listed[0]["width"], &listed[0]["height"]);
    assert_eq!(size, (&serde_json::json!(640), &serde_json::json!(360)));
    assert_eq!(listed[0]["configured_fps"], 10.0, "{state}");
    assert_eq!(listed[0]["viewers"], 2, "{state}");
    assert_eq!(listed[0]["state"], "online", "{state}");
    let url = listed[0]["url"].as_str().expect("url");
    let snap = reqwest::get(server.url(&url.replacen("/mosaic?", "/mosaic.jpg?", 1)))
        .await
        .expect("snapshot");
    assert_eq!(snap.status(), 200, "{url}");
    assert_eq!(
        server.state.mosaics().list().len(),
        1,
        "{url} is another mosaic"
    );
    let first = b.part().await;
    let second = b.part().await;
    assert!(second.timestamp() > first.timestamp());
    let cams = server.state.hub().cameras();
    assert_eq!(cams.len(), 3, "a mosaic is not listed with the cameras");
    // The inputs capture for the mosaic, without counting as stream viewers of their own.
    for c in &cams {
        assert!(
            c.demand().running,
            "{} captures while the mosaic is watched",
            c.name()
        );
        assert!(c.viewer_list().is_empty());
    }

    // Another width is another mosaic; a snapshot of the first shares its composition.
    let snap = reqwest::get(server.url("/mosaic.jpg?cameras=red,blue,down&width=640"))
        .await
        .expect("snapshot");
    assert_eq!(snap.status(), 200);
    let (w, h, _) = decode(&snap.bytes().await.expect("jpeg"));
    assert_eq!((w, h), (640, 360));
    assert_eq!(server.state.mosaics().list().len(), 1);
    // A camera smaller than its tile is scaled up to fill it: blue to the far corner.
    let snap = reqwest::get(server.url("/mosaic.jpg?cameras=blue&width=640"))
        .await
        .expect("snapshot");
    let (w, h, rgb) = decode(&snap.bytes().await.expect("jpeg"));
    assert_eq!((w, h), (640, 360));
    let corner = mean(&rgb, w, (600, 320, 36, 36));
    assert!(near(corner, BLUE), "the tile's far corner: {corner:?}");
    assert_eq!(server.state.mosaics().list().len(), 2);

    // Nobody watching: the mosaic stops, and with it its inputs' captures.
    drop((a, b));
    tokio::time::timeout(WAIT, async {
        while server
            .state
            .hub()
            .cameras()
            .iter()
            .any(|c| c.demand().running)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the inputs stop capturing once the mosaic is not watched");
    server.stop().await;
}

#[tokio::test]
async fn every_camera_by_default_and_bad_requests_say_what_to_do() {
    let server = server().await;
    let mut all = MjpegClient::connect(&server.url("/mosaic?width=480")).await;
    let (w, h, _) = decode(&all.part().await.jpeg);
    let layout = Layout::new(3, 480);
    assert_eq!((w, h), (layout.width as usize, layout.height as usize));
    drop(all);

    for (query, status, says) in [
        ("cameras=red,nope", 404, "nope"),
        ("cameras=,", 400, "at least one camera"),
        ("width=99999", 400, "width 99999 is outside"),
        ("width=wide", 400, "bad width"),
        ("fps=0", 400, "fps 0 is outside"),
        ("fps=NaN", 400, "bad fps"),
    ] {
        let resp = reqwest::get(server.url(&format!("/mosaic?{query}")))
            .await
            .expect("answer");
        assert_eq!(resp.status(), status, "{query}");
        let text = resp.text().await.expect("text");
        assert!(text.contains(says), "{query}: {text}");
    }
    let many = vec!["red"; 65].join(",");
    let resp = reqwest::get(server.url(&format!("/mosaic?cameras={many}")))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 400);
    server.stop().await;
}

#[tokio::test]
async fn mosaics_are_bounded_and_an_unwatched_one_makes_room() {
    let server = server().await;
    // Every slot taken by a watched mosaic (each width is a mosaic of its own).
    let mut watching = Vec::new();
    for i in 0..MAX_MOSAICS {
        let url = server.url(&format!("/mosaic?cameras=red&width={}&fps=2", 160 + 2 * i));
        let mut v = MjpegClient::connect(&url).await;
        v.part().await;
        watching.push(v);
    }
    let resp = reqwest::get(server.url("/mosaic?cameras=red&width=400&fps=2"))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 503);
    assert!(
        resp.text()
            .await
            .expect("text")
            .contains("being watched already")
    );

    // One viewer leaves: once its mosaic has stopped, a new one takes its place.
    drop(watching.pop());
    let made = tokio::time::timeout(WAIT, async {
        loop {
            let resp = reqwest::get(server.url("/mosaic.jpg?cameras=red&width=400&fps=2"))
                .await
                .expect("answer");
            if resp.status() == 200 {
                return resp;
            }
            assert_eq!(resp.status(), 503);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("an unwatched mosaic makes room");
    let (w, _, _) = decode(&made.bytes().await.expect("jpeg"));
    assert_eq!(w, 400);
    assert_eq!(server.state.mosaics().list().len(), MAX_MOSAICS);
    server.stop().await;
}
