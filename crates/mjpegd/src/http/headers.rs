//! Response headers that several handlers share.

use axum::http::{HeaderMap, HeaderValue, header};

/// Marks a live response (stream, snapshot, recording replay) as never to be cached.
///
/// `Pragma` too, because HTTP/1.0 caches ignore `Cache-Control`; a stale frame shown as live is
/// worse than a refetch.
pub(crate) fn no_cache(h: &mut HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
