//! Headers that several handlers share: response headers set alike, request list headers read
//! alike.

#[cfg(feature = "auth")]
use axum::http::HeaderName;
use axum::http::{HeaderMap, HeaderValue, header};

/// The items of a request's list header `name`, split at `sep` and trimmed, over every field
/// of that name: a list may come in several (HTTP/2 sends each cookie in a field of its own).
/// (The login form and its cookie, in builds with authentication, read them.)
#[cfg(feature = "auth")]
pub(crate) fn items<'a>(
    h: &'a HeaderMap,
    name: HeaderName,
    sep: char,
) -> impl Iterator<Item = &'a str> + 'a {
    h.get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(move |v| v.split(sep))
        .map(str::trim)
}

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
