//! Credential redaction for URLs shown in logs, errors and the state page.
//!
//! A leaf (std only): every layer that prints a source or bus URL uses this one rule, so a
//! password never shows whichever way a URL reaches the operator.

/// The URL with the secret part of its userinfo replaced by `***`: the password of
/// `user:password@` (`http://admin:***@cam/x`), or the whole userinfo when it has no `:`, since a
/// lone userinfo is often a token (`nats://***@host`).
///
/// Pure string work, so every source kind (and a build without the relay) redacts the same way.
/// When in doubt it hides more: everything up to the last `@` before the query or fragment counts
/// as userinfo, so a password with an unescaped `/` still never shows.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..before_query].rfind('@') else {
        return url.to_owned();
    };
    let shown = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords_and_tokens() {
        assert_eq!(
            redact_url("http://admin:secret@cam.local/video.mjpg"),
            "http://admin:***@cam.local/video.mjpg"
        );
        assert_eq!(redact_url("http://cam/x"), "http://cam/x");
        assert_eq!(redact_url("http://cam/x?u=a@b"), "http://cam/x?u=a@b");
        assert!(!redact_url("http://a:b@[bad/x").contains(":b@"));
        let slash = redact_url("http://u:pa/ss@cam:81/stream");
        assert_eq!(slash, "http://u:***@cam:81/stream");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("nats://u:p@h:1/c"), "nats://u:***@h:1/c");
        assert_eq!(redact_url("nats://tok@h:1"), "nats://***@h:1");
        assert_eq!(redact_url("nats://h:1"), "nats://h:1");
        assert_eq!(redact_url("nats://a:b@h1,c:d@h2/x"), "nats://a:***@h2/x");
    }
}
