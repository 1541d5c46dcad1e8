//! The typed errors of the setting, TLS and password checks keep the texts they had as strings
//! (operators and the config checker show them verbatim), and carry their causes as sources.

use mjpegd::transform::{Flip, Rotate};

#[test]
fn rotate_and_flip_errors_read_as_before() {
    let e = Rotate::try_from(45).expect_err("45 is not a rotation");
    assert_eq!(e.to_string(), "rotate must be 0, 90, 180 or 270 (got 45)");
    let e = "diagonal".parse::<Flip>().expect_err("not a flip");
    assert_eq!(
        e.to_string(),
        "flip must be \"horizontal\" or \"vertical\" (got \"diagonal\")"
    );
    // The config checker takes messages as strings.
    let s: String = e.into();
    assert!(s.starts_with("flip must be"), "{s}");
}

#[cfg(feature = "tls")]
#[test]
fn a_missing_certificate_is_named_with_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("missing-cert.pem");
    let key = dir.path().join("missing-key.pem");
    let e = mjpegd::tls::TlsConfig::load(&cert, &key).expect_err("no such file");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("--tls-cert {}: cannot read: ", cert.display())),
        "{text}"
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the I/O cause is kept: {e:?}"
    );
}

#[cfg(feature = "auth")]
#[test]
fn a_plaintext_password_hash_is_refused_with_its_cause() {
    let e = mjpegd::auth::check_hash("plaintext").expect_err("not a hash");
    let text = e.to_string();
    assert!(
        text.starts_with("not a password hash (")
            && text.ends_with("); make one with `mjpegd hash-password`"),
        "{text}"
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the parse cause is kept: {e:?}"
    );
    let hash = mjpegd::auth::hash_password("pw").expect("hash");
    assert!(mjpegd::auth::check_hash(&hash).is_ok(), "{hash}");
}
