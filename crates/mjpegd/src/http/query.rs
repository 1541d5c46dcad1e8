//! Lenient query-string parsing: unknown parameters are ignored everywhere (OctoPrint appends a
//! cache-buster such as `?1700000000`, OpenCV users add `&type=.mjpg`).

use std::time::Duration;

use super::HttpError;

/// Most query parameters looked at; the request-head size limit bounds the rest.
const MAX_PARAMS: usize = 64;

/// Lowest and highest `?fps=` a viewer may ask for.
pub const FPS_RANGE: (f64, f64) = (0.1, 120.0);

/// Decoded `key=value` pairs of a query string.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string; never fails.
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .take(MAX_PARAMS)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The query string without the parameters `keys`, re-encoded; `None` when nothing is left.
    pub fn without(&self, keys: &[&str]) -> Option<String> {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (k, v) in self.0.iter().filter(|(k, _)| !keys.contains(&k.as_str())) {
            out.append_pair(k, v);
            any = true;
        }
        any.then(|| out.finish())
    }

    /// `?fps=N` as the minimum interval between frames sent to this viewer.
    pub fn min_interval(&self) -> Result<Option<Duration>, HttpError> {
        let Some(raw) = self.get("fps") else {
            return Ok(None);
        };
        let (lo, hi) = FPS_RANGE;
        match raw.trim().parse::<f64>() {
            Ok(fps) if (lo..=hi).contains(&fps) => Ok(Some(Duration::from_secs_f64(1.0 / fps))),
            _ => Err(HttpError::BadRequest(format!(
                "bad fps {raw:?}: fps must be a number from {lo} to {hi} (frames per second for this viewer)"
            ))),
        }
    }
}

impl Query {
    /// `?width=N` for snapshot thumbnails, 16 to 8192 pixels.
    pub fn thumbnail_width(&self) -> Result<Option<u32>, HttpError> {
        let Some(raw) = self.get("width") else {
            return Ok(None);
        };
        match raw.trim().parse::<u32>() {
            Ok(w) if (16..=crate::render::MAX_DIMENSION).contains(&w) => Ok(Some(w)),
            _ => Err(HttpError::BadRequest(format!(
                "bad width {raw:?}: width must be a whole number of pixels from 16 to {}",
                crate::render::MAX_DIMENSION
            ))),
        }
    }
}

impl Query {
    /// `?height=N` of a stream, 16 to 8192 pixels.
    pub fn height(&self) -> Result<Option<u32>, HttpError> {
        let Some(raw) = self.get("height") else {
            return Ok(None);
        };
        match raw.trim().parse::<u32>() {
            Ok(h) if (16..=crate::render::MAX_DIMENSION).contains(&h) => Ok(Some(h)),
            _ => Err(HttpError::BadRequest(format!(
                "bad height {raw:?}: height must be a whole number of pixels from 16 to {}",
                crate::render::MAX_DIMENSION
            ))),
        }
    }

    /// `?width=N` and/or `?height=N` of a stream, when either is given.
    pub fn stream_size(&self) -> Result<Option<crate::hub::RequestedSize>, HttpError> {
        match (self.thumbnail_width()?, self.height()?) {
            (None, None) => Ok(None),
            size => Ok(Some(size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_cache_busters_and_unknown_keys() {
        let q = Query::parse(Some("action=stream&1700000000&type=.mjpg"));
        assert_eq!(q.get("action"), Some("stream"));
        assert_eq!(q.min_interval().ok(), Some(None));
    }

    #[test]
    fn stream_size_bounds() {
        let q = |s| Query::parse(Some(s)).stream_size().ok();
        assert_eq!(q("fps=5"), Some(None));
        assert_eq!(q("width=640"), Some(Some((Some(640), None))));
        assert_eq!(q("height=16"), Some(Some((None, Some(16)))));
        assert_eq!(
            q("width=8192&height=100"),
            Some(Some((Some(8192), Some(100))))
        );
        for bad in [
            "width=15",
            "height=8193",
            "width=abc",
            "height=",
            "width=-1",
        ] {
            assert!(Query::parse(Some(bad)).stream_size().is_err(), "{bad}");
        }
    }

    #[test]
    fn fps_bounds() {
        let ok = Query::parse(Some("fps=5")).min_interval();
        assert_eq!(ok.ok().flatten(), Some(Duration::from_millis(200)));
        for bad in [
            "fps=0", "fps=-1", "fps=abc", "fps=", "fps=121", "fps=NaN", "fps=inf",
        ] {
            assert!(Query::parse(Some(bad)).min_interval().is_err(), "{bad}");
        }
        assert!(Query::parse(Some("fps=120")).min_interval().is_ok());
        assert!(Query::parse(Some("fps=0.1")).min_interval().is_ok());
    }
}
