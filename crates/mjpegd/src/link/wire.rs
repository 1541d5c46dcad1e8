//! One frame as one NATS message: the JPEG is the payload (the published `Bytes`, shared, not
//! copied), its stamp travels in headers. Decoding checks every header and the JPEG's markers:
//! anyone who can publish on the subject is a peer, and a bad message is refused, not shown.

use std::time::{Duration, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::frame::{Frame, Image, Stamp};
use crate::jpeg;

/// The camera node's sequence number of the frame.
pub const SEQ: &str = "Mjpegd-Seq";
/// Capture wall time, microseconds since the Unix epoch (the `X-Timestamp` every node sends).
pub const CAPTURED_US: &str = "Mjpegd-Captured-Us";
/// Width in pixels.
pub const WIDTH: &str = "Mjpegd-Width";
/// Height in pixels.
pub const HEIGHT: &str = "Mjpegd-Height";
/// `1` for a live frame, `0` for the camera node's no-signal frame.
pub const ONLINE: &str = "Mjpegd-Online";

/// The headers of `frame`, and the size of their encoded block (the server counts headers and
/// payload together against its `max_payload`).
pub fn headers(frame: &Frame) -> (HeaderMap, usize) {
    let us = frame
        .captured()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let pairs = [
        (SEQ, frame.seq().to_string()),
        (CAPTURED_US, us.to_string()),
        (WIDTH, frame.width().to_string()),
        (HEIGHT, frame.height().to_string()),
        (ONLINE, if frame.online() { "1" } else { "0" }.to_owned()),
    ];
    // "NATS/1.0\r\n", one "Name: value\r\n" per header, then "\r\n".
    let mut len = 10 + 2;
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        len += name.len() + 2 + value.len() + 2;
        h.insert(name, value);
    }
    (h, len)
}

/// A frame read from the bus.
#[derive(Debug, Clone)]
pub struct Received {
    /// The camera node's sequence number.
    pub seq: u64,
    /// The image.
    pub image: Image,
    /// The camera node's capture time and online flag.
    pub stamp: Stamp,
}

/// A message refused as a frame: what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFrame(String);

fn number<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Result<T, BadFrame> {
    let v = h
        .get(name)
        .ok_or_else(|| BadFrame(format!("header {name} missing")))?
        .as_str();
    v.parse()
        .map_err(|_| BadFrame(format!("header {name}: {:?} is not a number", trunc(v))))
}

fn trunc(s: &str) -> &str {
    match s.char_indices().nth(32) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks and decodes a message; the error says what was wrong.
pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Received, BadFrame> {
    let h = headers.ok_or_else(|| BadFrame("no headers (not an mjpegd frame)".into()))?;
    let seq: u64 = number(h, SEQ)?;
    let us: u64 = number(h, CAPTURED_US)?;
    let width: u32 = number(h, WIDTH)?;
    let height: u32 = number(h, HEIGHT)?;
    let online = match h.get(ONLINE).map(|v| v.as_str()) {
        Some("1") => true,
        Some("0") => false,
        Some(v) => {
            return Err(BadFrame(format!(
                "header {ONLINE}: {:?} is not 0 or 1",
                trunc(v)
            )));
        }
        None => return Err(BadFrame(format!("header {ONLINE} missing"))),
    };
    let jpeg_len = jpeg::complete_len(&payload).ok_or_else(|| {
        BadFrame(format!(
            "payload of {} bytes is not a complete JPEG",
            payload.len()
        ))
    })?;
    let (w, hgt) = jpeg::dimensions(&payload[..jpeg_len])
        .map_err(|e| BadFrame(format!("payload is not a readable JPEG: {e}")))?;
    if (w, hgt) != (width, height) {
        return Err(BadFrame(format!(
            "headers say {width}x{height} but the JPEG is {w}x{hgt}"
        )));
    }
    let captured = UNIX_EPOCH
        .checked_add(Duration::from_micros(us))
        .ok_or_else(|| BadFrame(format!("header {CAPTURED_US}: {us} is out of range")))?;
    Ok(Received {
        seq,
        image: Image {
            jpeg: payload.slice(..jpeg_len),
            width,
            height,
        },
        stamp: Stamp { captured, online },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn jpeg(w: u32, h: u32) -> Bytes {
        crate::render::Canvas::new(w, h, [10, 20, 30])
            .encode(50)
            .expect("encode")
    }

    #[test]
    fn round_trips_a_frame() {
        let j = jpeg(32, 16);
        let t = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let image = Image {
            jpeg: j.clone(),
            width: 32,
            height: 16,
        };
        let frame = Frame::new(7, &image, t, false);
        let r = decode(Some(&headers(&frame).0), frame.jpeg()).expect("decodes");
        assert_eq!(r.seq, 7);
        assert_eq!(r.image.jpeg, j);
        assert!(!r.stamp.online);
        // Microseconds survive: the X-Timestamp an edge writes is the camera node's.
        assert_eq!(
            crate::mjpeg::write::timestamp_value(r.stamp.captured),
            crate::mjpeg::write::timestamp_value(t)
        );
    }

    #[test]
    fn refuses_malformed_messages() {
        let j = jpeg(32, 16);
        let frame = Frame::new(
            1,
            &Image {
                jpeg: j.clone(),
                width: 32,
                height: 16,
            },
            SystemTime::now(),
            true,
        );
        let good = headers(&frame).0;
        assert!(decode(None, j.clone()).is_err());
        let e = decode(Some(&good), Bytes::from_static(b"hello"))
            .expect_err("not a JPEG")
            .to_string();
        assert!(e.contains("not a complete JPEG"), "{e}");
        let mut truncated = j.to_vec();
        truncated.truncate(j.len() / 2);
        assert!(decode(Some(&good), Bytes::from(truncated)).is_err());
        for (name, value) in [
            (SEQ, "x"),
            (CAPTURED_US, "-1"),
            (WIDTH, "33"),
            (ONLINE, "yes"),
        ] {
            let mut h = good.clone();
            h.insert(name, value);
            assert!(decode(Some(&h), j.clone()).is_err(), "{name}={value}");
        }
        let mut h = HeaderMap::new();
        h.insert(SEQ, "1");
        let e = decode(Some(&h), j)
            .expect_err("missing headers")
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
